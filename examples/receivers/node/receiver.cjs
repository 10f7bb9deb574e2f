// A webhook receiver in Node, verifying with the npm `standardwebhooks` package.
//
//   npm install standardwebhooks@1.1.1
//   WEBHOOK_SECRET=whsec_... node receiver.cjs 8002
//
// Prints one line per request: `verified <webhook-id> <type>` (answered 204) or
// `rejected <webhook-id>` (answered 400).
const http = require("node:http");
const { Webhook } = require("standardwebhooks");

// The library takes the secret's base64 part; jobwire's secrets carry Svix's "whsec_" prefix.
const webhook = new Webhook(process.env.WEBHOOK_SECRET.replace(/^whsec_/, ""));
const MAX_BODY = 1 << 20;

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
