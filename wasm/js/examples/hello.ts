// The same in TypeScript, type-checked against the package's index.d.ts:
//   npx tsc --noEmit --strict hello.ts
import { Client, MultiputError, UndecodableError, type Value, type WriteReport } from 'multiput';

async function main(servers: string): Promise<void> {
  const client = new Client(servers.split(','), { replicas: 1, timeout: 500 });
  try {
    const report: WriteReport = await client.set('hello:ts', 'typed', { ttl: 60 });
    const v: Value | null = await client.get('hello:ts');
    const n: number | bigint | null = await client.incr('hello:ts:n', 1, 0);
    console.log(report.stored, v, n);
  } catch (e) {
    if (e instanceof UndecodableError) console.error('written by another client:', e.message);
    else if (e instanceof MultiputError) console.error(e.kind, e.message);
    throw e;
  } finally {
    client.close();
  }
}

void main(process.argv[2] ?? '127.0.0.1:11211');
