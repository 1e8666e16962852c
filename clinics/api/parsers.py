"""The API's JSON body parser.

DRF's ``JSONParser`` turns ``ValueError`` into a 400 but lets
``RecursionError`` through: a body of a few thousand nested brackets, well
under the size limit, was a 500 with a traceback in the log on every JSON
endpoint.
"""

from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None
