// A customer-style Flowstep in JavaScript: an unsubscribe link built from the message's
// `data`, added as a footer to the text and html bodies and as `List-Unsubscribe`. The same
// behaviour as the Rust example in examples/unsubscribe-footer, byte for byte.

import {
  flowstep, invalidConfig, log, missingData, outcome, parseData, unsupportedMessage,
} from '@sluice/flowstep';

// A token goes into a URL unencoded, so it may hold only characters that need no encoding.
const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;
// A base URL that can stand in a header between angle brackets and in an html attribute.
const BASE_URL = /^https:\/\/[\x21-\x7e]+$/;

export const handler = flowstep(
  (msg, config) => {
    if (!BASE_URL.test(config.base_url) || /[<>"]/.test(config.base_url)) {
      throw invalidConfig('base_url must be an https URL without spaces, quotes or angle brackets');
    }
    const token = parseData(msg).unsubscribe_token;
    if (typeof token !== 'string') {
      throw missingData('data has no unsubscribe_token');
    }
    if (!TOKEN.test(token)) {
      throw missingData('unsubscribe_token may hold only letters, digits, - and _');
    }
    const separator = config.base_url.includes('?') ? '&' : '?';
    const url = `${config.base_url}${separator}token=${token}`;

    const text = msg.text();
    const html = msg.html();
    if (text === undefined && html === undefined) {
      throw unsupportedMessage('the message has neither a text nor an html body');
    }
    msg.setHeader('List-Unsubscribe', `<${url}>`);
    msg.setHeader('List-Unsubscribe-Post', 'List-Unsubscribe=One-Click');
    if (text !== undefined) {
      // The footer's lines end as the body's do: the host keeps a lone LF after a CRLF as it
      // is, which would leave a bare LF in the sent message.
      const eol = text.includes('\r\n') ? '\r\n' : '\n';
      const gap = text.endsWith('\n') ? '' : eol;
      msg.setText(`${text}${gap}${eol}-- ${eol}Unsubscribe: ${url}${eol}`);
    }
    if (html !== undefined) {
      const link = `<p><a href="${url.replaceAll('&', '&amp;')}">Unsubscribe</a></p>`;
      // Before the closing body tag when there is one, so the link is inside the page.
      const found = html.lastIndexOf('</body>');
      const at = found === -1 ? html.length : found;
      msg.setHtml(html.slice(0, at) + link + html.slice(at));
    }
    log.info('unsubscribe link added');
    return outcome.continue();
  },
  { base_url: { type: 'string' } },
);
