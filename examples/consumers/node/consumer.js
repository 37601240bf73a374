// consumer.js -- relay's topics with kafkajs. relay's producer compresses with lz4 by
// default, which kafkajs decodes only with a codec: ./lz4.js (on lz4js) is registered
// before the consumer starts. Prints "KEY CE_ID TYPE" per event.
//   npm install && node consumer.js BROKERS GROUP TOPIC [MAX_EVENTS]
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs');
const lz4Codec = require('./lz4');

CompressionCodecs[CompressionTypes.LZ4] = lz4Codec;

async function main() {
  const [brokers, groupId, topic, maxArg] = process.argv.slice(2);
  const max = Number(maxArg || 0);
  const kafka = new Kafka({
    clientId: 'relay-example', brokers: brokers.split(','), logLevel: logLevel.WARN,
  });
  const consumer = kafka.consumer({ groupId });
  let n = 0;
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    // kafkajs commits the offset after eachMessage returns: at least once.
    eachMessage: async ({ message }) => {
      const event = JSON.parse(message.value.toString());
      console.log(message.key.toString(), message.headers.ce_id.toString(), event.type);
      if (max && ++n >= max) setImmediate(() => consumer.disconnect().then(() => process.exit(0)));
    },
  });
}

main().catch((e) => { console.error(e); process.exit(1); });
