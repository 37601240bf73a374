// lz4.js -- a kafkajs codec for lz4 (the compression relay's producer uses by default),
// on lz4js, a pure-JavaScript LZ4 frame implementation. The published kafkajs-lz4
// 2.0.0-beta.0 fails to load on Node.js 18 and later (its wasm loader calls fetch()
// on a file path), and 1.x needs a native build; this codec needs neither.
const lz4 = require('lz4js');

module.exports = () => ({
  async compress(encoder) {
    return Buffer.from(lz4.compress(encoder.buffer));
  },
  async decompress(buffer) {
    return Buffer.from(lz4.decompress(buffer));
  },
});
