"""For development only: a local Kafka broker from Maven-fetched jars, the dev stack behind
`make run`, the demo and its webhook receiver."""
