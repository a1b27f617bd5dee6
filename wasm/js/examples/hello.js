'use strict';
// The smallest Node program on multiput (npm install multiput):
//   node hello.js 127.0.0.1:11211,127.0.0.1:11212
const { Client } = require('multiput');

async function main() {
  const client = new Client(process.argv[2] || process.env.MULTIPUT_SERVERS || '127.0.0.1:11211');
  try {
    await client.set('hello:node', { from: 'Node', n: 1 }, { ttl: 60 });
    const v = await client.get('hello:node');
    if (JSON.stringify(v) !== '{"from":"Node","n":1}') throw new Error(`read back ${JSON.stringify(v)}`);
    console.log('hello:node =', JSON.stringify(v));
  } finally {
    client.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
