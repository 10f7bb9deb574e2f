"""What the API and the dispatcher share about webhooks: the model (endpoints, deliveries,
attempts, payloads), the endpoint registry, the secret box and the SSRF policy."""
