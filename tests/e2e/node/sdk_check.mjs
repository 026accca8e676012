// Calls the gateway with the official OpenAI Node SDK, exactly as the API reference's quick start does,
// and prints one JSON line of what it saw for the Python test to assert on.
import OpenAI from "openai";

const client = new OpenAI({
  apiKey: process.env.INFERBASE_API_KEY,
  baseURL: process.env.INFERBASE_BASE_URL,
  maxRetries: 0,
});
const model = process.env.INFERBASE_MODEL;
const out = {};

const response = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Explain quantum computing in 3 sentences." }],
  max_tokens: 8,
});
out.nonstream = {
  model: response.model,
  content: response.choices[0].message.content,
  usage: response.usage,
  routing: response.routing ?? null,
};

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "Hello!" }],
  max_tokens: 8,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
let usage = null;
let chunks = 0;
let routing = null;
for await (const chunk of stream) {
  chunks += 1;
  if (chunk.object === "routing") routing = chunk;
  if (chunk.usage) usage = chunk.usage;
  text += chunk.choices?.[0]?.delta?.content ?? "";
}
out.stream = { chunks, text, usage, routing };

try {
  await client.chat.completions.create({ model: "no/such-model", messages: [{ role: "user", content: "x" }] });
  out.notfound = null;
} catch (err) {
  out.notfound = { status: err.status, name: err.constructor.name };
}
console.log(JSON.stringify(out));
