/** The part of cluster-key-slot's API FDS uses (the package ships no types). It is the slot function ioredis routes by. */
declare module 'cluster-key-slot' {
  /** The Redis Cluster slot (0..16383) of a key: CRC16 of its hash tag, or of the whole key without one. */
  function calculateSlot(key: string | Buffer): number;
  export default calculateSlot;
}
