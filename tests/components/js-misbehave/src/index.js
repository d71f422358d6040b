// A JavaScript step that misbehaves on request, for the containment tests (and reads a
// header, for the bench). It changes the subject first, so a test sees that a stopped step's
// change is thrown away.

import { flowstep, outcome } from '@sluice/flowstep';

export const handler = flowstep(
  (msg, config) => {
    if (config.behaviour === 'read-header') {
      // The same work as the Rust test step's read-header, for the per-call bench.
      msg.header('Subject');
      return outcome.continue();
    }
    msg.setHeader('Subject', 'changed before misbehaving');
    if (config.behaviour === 'change-subject') {
      return outcome.continue();
    }
    if (config.behaviour === 'loop') {
      for (;;) {
        // Spins until the host's deadline interrupts it.
      }
    }
    if (config.behaviour === 'memory-bomb') {
      const hoard = [];
      for (;;) {
        // Buffers reach the allocator at once; arrays of numbers make the garbage collector
        // churn until the deadline instead.
        hoard.push(new Uint8Array(8 << 20).fill(1));
      }
    }
    throw new Error(`unknown behaviour ${config.behaviour}`);
  },
  { behaviour: { type: 'string' } },
);
