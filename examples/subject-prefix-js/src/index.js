// A customer-style Flowstep in JavaScript: puts a configured prefix before the subject. The
// same behaviour as the Rust example in examples/subject-prefix, byte for byte.

import { flowstep, invalidConfig, log, outcome } from '@sluice/flowstep';

export const handler = flowstep(
  (msg, config) => {
    if (config.prefix.trim() === '') {
      throw invalidConfig('prefix must not be empty');
    }
    const subject = msg.header('Subject') ?? '';
    if (config.skip_if_present && subject.startsWith(config.prefix)) {
      log.debug('subject already carries the prefix');
      return outcome.continue();
    }
    // A prefix the host refuses (a line break in it) throws an edit-error, which `flowstep`
    // turns into the step's error; the message is then kept as it was.
    msg.setHeader('Subject', subject === '' ? config.prefix : `${config.prefix} ${subject}`);
    return outcome.continue();
  },
  {
    prefix: { type: 'string' },
    skip_if_present: { type: 'boolean', default: true },
  },
);
