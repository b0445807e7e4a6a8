// Times solana-dex-parser on recorded transactions, the way bench/decode.py times quantbot:
// raw JSON text in, JSON.parse + DexParser.parseAll per transaction, warm-up, then whole passes over
// the set for a fixed time. Prints one JSON line: the files it could parse, the count and the time.
//
// usage: node peer.mjs <node_modules dir holding solana-dex-parser> <seconds> <warmup seconds> <file>...
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const [modulesDir, secondsArg, warmupArg, ...files] = process.argv.slice(2);
const require = createRequire(path.join(modulesDir, 'noop.js'));
const { DexParser } = require('solana-dex-parser');
const parser = new DexParser();
const config = { tryUnknowDEX: true };

function parseOne(text) {
  let doc = JSON.parse(text);
  if (doc.result !== undefined) doc = doc.result;
  return parser.parseAll(doc, config);
}

// Keep the transactions the parser can read (it rejects base64 and Geyser-shaped input).
const texts = [];
const accepted = [];
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  let ok = false;
  try { ok = parseOne(text).state === true; } catch { ok = false; }
  if (ok) { texts.push(text); accepted.push(file); }
}

function pass() {
  for (const text of texts) parseOne(text);
}

const now = () => Number(process.hrtime.bigint()) / 1e9;
let until = now() + Number(warmupArg);
while (now() < until) pass();
let count = 0;
const start = now();
until = start + Number(secondsArg);
do { pass(); count += texts.length; } while (now() < until);
const elapsed = now() - start;
console.log(JSON.stringify({ files: accepted, count, seconds: elapsed }));
