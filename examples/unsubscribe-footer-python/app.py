"""A customer-style Flowstep in Python: an unsubscribe link built from the message's `data`,
added as a footer to the text and html bodies and as `List-Unsubscribe`. The same behaviour as
the Rust example in examples/unsubscribe-footer, byte for byte."""

import re
from dataclasses import dataclass

from sluice_flowstep import (
    Flowstep,
    invalid_config,
    log,
    missing_data,
    outcome,
    parse_data,
    unsupported_message,
)

# A token goes into a URL unencoded, so it may hold only characters that need no encoding.
TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A base URL that can stand in a header between angle brackets and in an html attribute.
BASE_URL = re.compile(r'https://[\x21-\x7e]+')


@dataclass
class Config:
    """The step's JSON configuration."""

    base_url: str


class Handler(Flowstep):
    """Adds the unsubscribe link to the bodies and the headers."""

    config_type = Config

    def step(self, msg, config):
        if not BASE_URL.fullmatch(config.base_url) or re.search(r'[<>"]', config.base_url):
            raise invalid_config(
                "base_url must be an https URL without spaces, quotes or angle brackets"
            )
        token = parse_data(msg).get("unsubscribe_token")
        if not isinstance(token, str):
            raise missing_data("data has no unsubscribe_token")
        if not TOKEN.fullmatch(token):
            raise missing_data("unsubscribe_token may hold only letters, digits, - and _")
        separator = "&" if "?" in config.base_url else "?"
        url = f"{config.base_url}{separator}token={token}"

        text = msg.text()
        html = msg.html()
        if text is None and html is None:
            raise unsupported_message("the message has neither a text nor an html body")
        msg.set_header("List-Unsubscribe", f"<{url}>")
        msg.set_header("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        if text is not None:
            # The footer's lines end as the body's do: the host keeps a lone LF after a CRLF
            # as it is, which would leave a bare LF in the sent message.
            eol = "\r\n" if "\r\n" in text else "\n"
            gap = "" if text.endswith("\n") else eol
            msg.set_text(f"{text}{gap}{eol}-- {eol}Unsubscribe: {url}{eol}")
        if html is not None:
            link = f'<p><a href="{url.replace("&", "&amp;")}">Unsubscribe</a></p>'
            # Before the closing body tag when there is one, so the link is inside the page.
            found = html.rfind("</body>")
            at = len(html) if found == -1 else found
            msg.set_html(html[:at] + link + html[at:])
        log.info("unsubscribe link added")
        return outcome.CONTINUE
