// A webhook receiver in Node, verifying with the npm `standardwebhooks` package.
//
//   npm install standardwebhooks@1.1.1
//   WEBHOOK_SECRET=whsec_... node receiver.cjs 8002
//   WEBHOOK_SECRET=whpk_... node receiver.cjs 8002   (an ed25519 endpoint: v1a, node:crypto)
//
// Prints one line per request: `verified <webhook-id> <type>` (answered 204) or
// `rejected <webhook-id>` (answered 400).
const crypto = require("node:crypto");
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

const MAX_BODY = 1 << 20;
const TOLERANCE_S = 300;

// v1a as the Standard Webhooks spec defines it: an ed25519 signature of
// `${webhook-id}.${webhook-timestamp}.${body}`, checked with the whpk_ public key.
class PublicKeyWebhook {
  constructor(publicKey) {
    const x = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64").toString("base64url");
    this.key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x }, format: "jwk" });
  }

  verify(body, headers) {
    const timestamp = Number(headers["webhook-timestamp"]);
    if (!(Math.abs(Date.now() / 1000 - timestamp) <= TOLERANCE_S)) throw new Error("timestamp too far from now");
    const signed = Buffer.from(`${headers["webhook-id"]}.${headers["webhook-timestamp"]}.${body}`, "utf8");
    for (const entry of String(headers["webhook-signature"]).split(" ")) {
      const [version, signature] = entry.split(",", 2);
      if (version === "v1a" && crypto.verify(null, signed, this.key, Buffer.from(signature || "", "base64"))) {
        return JSON.parse(body);
      }
    }
    throw new Error("no v1a signature verifies");
  }
}

const secret = process.env.WEBHOOK_SECRET;
// The library takes the secret's base64 part; jobwire's secrets carry Svix's "whsec_" prefix.
const webhook = secret.startsWith("whpk_") ? new PublicKeyWebhook(secret) : new Webhook(secret.replace(/^whsec_/, ""));

http.createServer((request, response) => {
  const chunks = [];
  let size = 0;
  request.on("data", (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY) chunks.push(chunk);
  });
  request.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8"); // verify the raw body, not re-serialised JSON
    const id = request.headers["webhook-id"];
    try {
      const event = webhook.verify(body, request.headers); // signature and timestamp
      console.log(`verified ${id} ${event.type}`);
      response.writeHead(204).end();
    } catch (error) {
      console.log(`rejected ${id}`);
      response.writeHead(400).end();
    }
  });
}).listen(Number(process.argv[2]), "127.0.0.1");
