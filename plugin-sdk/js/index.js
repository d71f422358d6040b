// Helpers for Sluice Flowsteps in JavaScript, built with componentize-js against
// `sluice:flowstep@0.2.0` (world `flowstep`). See README.md.

import { write } from 'sluice:flowstep/log@0.2.0';

/** An error the host records by case: one of the `step-error` variants of the contract. */
export class StepError extends Error {
  /** `tag` is the variant's name in the WIT, e.g. `invalid-config`. */
  constructor(tag, message) {
    super(message);
    this.name = 'StepError';
    this.tag = tag;
    // componentize-js returns a thrown value's `payload` as the `err` of `result`, but only
    // when it is an own property: an inherited getter makes the throw a trap.
    this.payload = { tag, val: message };
  }
}

/** The configuration is missing something or has a wrong value. */
export const invalidConfig = (why) => new StepError('invalid-config', why);
/** The submitted `data` lacks something the step needs. */
export const missingData = (why) => new StepError('missing-data', why);
/** The message has a form the step cannot work with. */
export const unsupportedMessage = (why) => new StepError('unsupported-message', why);
/** Anything else. */
export const otherError = (why) => new StepError('other', why);

/** What happens to the message after the step. */
export const outcome = {
  /** Go on to the next step. */
  continue: () => ({ tag: 'continue' }),
  /** Stop the flow and keep the message as HELD, for a person to look at. */
  hold: (reason) => ({ tag: 'hold', val: String(reason) }),
  /** Stop the flow and do not send the message. */
  discard: (reason) => ({ tag: 'discard', val: String(reason) }),
};

/** Writing to the step's log, which the host keeps with the message's events. */
export const log = {
  /** A debugging detail. */
  debug: (line) => write('debug', String(line)),
  /** Something worth knowing about this message. */
  info: (line) => write('info', String(line)),
  /** Something that went wrong but did not stop the step. */
  warn: (line) => write('warn', String(line)),
  /** An error. */
  error: (line) => write('error', String(line)),
};

const TYPE_CHECKS = {
  string: (value) => typeof value === 'string',
  boolean: (value) => typeof value === 'boolean',
  number: (value) => typeof value === 'number' && Number.isFinite(value),
  integer: (value) => Number.isInteger(value),
  array: (value) => Array.isArray(value),
  object: (value) => typeof value === 'object' && value !== null && !Array.isArray(value),
};

/**
 * Parses the step's JSON configuration against `fields`: `{ name: { type, default? } }`, where
 * a field without a default is required. Unknown keys, wrong types and missing fields throw
 * `invalid-config`, so a typo in a flow fails loudly instead of being ignored.
 */
export function parseConfig(text, fields) {
  let parsed;
  try {
    parsed = text.trim() === '' ? {} : JSON.parse(text);
  } catch (error) {
    throw invalidConfig(`the configuration is not JSON: ${error.message}`);
  }
  if (!TYPE_CHECKS.object(parsed)) {
    throw invalidConfig('the configuration must be a JSON object');
  }
  for (const key of Object.keys(parsed)) {
    if (!Object.hasOwn(fields, key)) {
      throw invalidConfig(`unknown field \`${key}\`, expected one of ${Object.keys(fields).join(', ')}`);
    }
  }
  const config = {};
  for (const [key, field] of Object.entries(fields)) {
    if (!Object.hasOwn(parsed, key)) {
      if (!Object.hasOwn(field, 'default')) {
        throw invalidConfig(`missing field \`${key}\``);
      }
      config[key] = field.default;
      continue;
    }
    const check = TYPE_CHECKS[field.type];
    if (!check) {
      throw new Error(`parseConfig: unknown type ${field.type} for field ${key}`);
    }
    if (!check(parsed[key])) {
      throw invalidConfig(`field \`${key}\` must be a ${field.type}`);
    }
    config[key] = parsed[key];
  }
  return config;
}

/**
 * Parses the message's `data` (the JSON submitted with it) as an object; throws
 * `missing-data` when there is none or it is not a JSON object.
 */
export function parseData(msg) {
  const text = msg.data();
  if (text === undefined || text === null) {
    throw missingData('the message was submitted without data');
  }
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw missingData(`the message's data is not JSON: ${error.message}`);
  }
  if (!TYPE_CHECKS.object(parsed)) {
    throw missingData("the message's data must be a JSON object");
  }
  return parsed;
}

/** The words for a change the host refused (an `edit-error`), as the Rust SDK words them. */
export function describeEditError(refused) {
  switch (refused.tag) {
    case 'invalid-header-name':
      return `${JSON.stringify(refused.val)} is not a header name`;
    case 'invalid-header-value':
      return `the value of header ${JSON.stringify(refused.val)} holds a line break or control character`;
    case 'invalid-address':
      return `${JSON.stringify(refused.val)} is not an address`;
    case 'malformed-message':
      return `malformed message: ${refused.val}`;
    case 'too-large':
      return `the message would be larger than the limit of ${refused.val} bytes`;
    case 'no-such-attachment':
      return `there is no attachment ${refused.val}`;
    default:
      return JSON.stringify(refused);
  }
}

/**
 * The `edit-error` a setter threw (componentize-js throws the `err` of a `result` as an error
 * whose `payload` is the variant), or undefined when `thrown` is something else.
 */
export function editErrorOf(thrown) {
  const refused = thrown?.payload;
  const editTags = [
    'invalid-header-name', 'invalid-header-value', 'invalid-address',
    'malformed-message', 'too-large', 'no-such-attachment',
  ];
  return refused && editTags.includes(refused.tag) ? refused : undefined;
}

// SpiderMonkey reports a failed allocation as a catchable "out of memory". It means the step
// hit the host's memory cap, which the host reports as such only if the call traps.
function isOutOfMemory(thrown) {
  const message = thrown instanceof Error ? thrown.message : thrown;
  return message === 'out of memory';
}

// Whatever else `process` throws must reach the host as a `step-error`: an exception that
// escapes componentize-js's export unconverted would be a trap, which counts towards
// disabling the plugin.
function toStepError(thrown) {
  if (isOutOfMemory(thrown)) {
    return undefined;
  }
  if (thrown instanceof StepError) {
    return thrown;
  }
  const refused = editErrorOf(thrown);
  if (refused) {
    return otherError(`the host refused a change: ${describeEditError(refused)}`);
  }
  const why = thrown instanceof Error ? `${thrown.name}: ${thrown.message}` : String(thrown);
  return otherError(why);
}

/**
 * Makes the `handler` export from `process(msg, config)`. With `fields`, the configuration is
 * parsed by `parseConfig` first; without, `process` gets the raw string. `process` returns an
 * outcome (`undefined` means continue) and throws to fail the step.
 */
export function flowstep(process, fields) {
  return {
    process(msg, configText) {
      try {
        const config = fields === undefined ? configText : parseConfig(configText, fields);
        return process(msg, config) ?? outcome.continue();
      } catch (thrown) {
        // Without a step error (out of memory), the original is rethrown: not a `step-error`,
        // it cannot be returned, and the call traps.
        throw toStepError(thrown) ?? thrown;
      }
    },
  };
}
