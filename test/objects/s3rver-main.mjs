// Runs s3rver as its own process. It needs --openssl-legacy-provider: its ListObjects continuation
// tokens use DES, which OpenSSL 3 only offers through the legacy provider.
import S3rver from 's3rver';

const [dir, bucket] = process.argv.slice(2);
const server = new S3rver({
  port: 0,
  address: '127.0.0.1',
  directory: dir,
  silent: true,
  configureBuckets: [{ name: bucket, configs: [] }],
});
const info = await server.run();
process.stdout.write(JSON.stringify({ port: info.port }) + '\n');
process.on('SIGTERM', () => void server.close().then(() => process.exit(0)));
