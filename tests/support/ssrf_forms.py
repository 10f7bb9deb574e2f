"""Every way of writing a host that the SSRF guard refuses, for the tests at endpoint creation
(the API) and at send time (the dispatcher's sender against a real loopback listener).

The numeric forms all mean 127.0.0.1 to inet_aton or a WHATWG URL parser. The tests allow
127.0.0.0/8, so the canonical 127.0.0.1 is accepted and connected to, and only the way the
host is written can be what refuses the others.
"""

LOOPBACK_FORMS = [
    "2130706433",  # one decimal number
    "0x7f000001",  # one hex number
    "0x7F.1",  # hex, short form
    "0177.0.0.1",  # octal first part
    "0177.1",  # octal, short form
    "127.1",  # short form a.d
    "127.0.1",  # short form a.b.d
    "127.0.0.1.",  # trailing dot
    "017700000001",  # one octal number
]

#: IPv6 addresses that carry or reach an IPv4 address (here a loopback or a private one), and
#: the deprecated site-local range; refused even though 127.0.0.0/8 is allowed.
EMBEDDING_FORMS = [
    "[2002:7f00:1::1]",  # 6to4 of 127.0.0.1
    "[2002:a00:1::1]",  # 6to4 of 10.0.0.1
    "[2001:0:4136:e378:8000:63bf:80ff:fffe]",  # Teredo, client 127.0.0.1
    "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
    "[64:ff9b::a00:1]",  # NAT64 of 10.0.0.1
    "[fec0::1]",  # site-local
]

#: Non-ASCII ways of writing 127.0.0.1 that yarl (and so aiohttp) normalises to it: refused
#: although 127.0.0.0/8 is allowed, since only a check on the written host would miss them.
UNICODE_FORMS = [
    "１２７.０.０.１",  # fullwidth digits
    "127。0。0。1",  # ideographic full stops
    "127．0．0．1",  # fullwidth full stops
    "127｡0｡0｡1",  # halfwidth ideographic full stops
    "１２７.0.0.1",  # mixed
    "①②⑦.0.0.1",  # circled digits
]

ALLOW_LOOPBACK = "127.0.0.0/8"
