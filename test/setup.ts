/**
 * Seeds fast-check from FC_SEED when given, so any failure seen in CI can be replayed
 * locally: FC_SEED=<seed printed in the failure> npm test.
 */
import fc from 'fast-check';

const seed = process.env.FC_SEED;
if (seed !== undefined && seed !== '') fc.configureGlobal({ seed: Number(seed) });
