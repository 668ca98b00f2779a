"""The text form of a condition, both ways.

    rsi(14) < 30 and close > sma(200)
    (close crosses_above ema(21) or macd(12,26,9).hist crosses_above 0) and adx(14) > 25
    close > sma(50)@4h and close > close[1]

Grammar (case-insensitive keywords, ``and`` binds tighter than ``or``)::

    condition  := all ("or" all)*
    all        := atom ("and" atom)*
    atom       := "(" condition ")" | operand OP operand
    OP         := "<" | "<=" | ">" | ">=" | "crosses_above" | "crosses_below"   ("crosses above" too)
    operand    := NUMBER | COLUMN suffix | INDICATOR ["(" [NUMBER ("," NUMBER)*] ")"] ["." OUTPUT] suffix
    suffix     := ["@" TIMEFRAME] ["[" OFFSET "]"]     (either order)

``@4h`` reads the operand on closed 4h bars; ``[1]`` is the value one bar back (in the operand's
timeframe). :func:`format_condition` writes every argument and the output of multi-output
indicators, so ``parse_condition_text(format_condition(node)) == node`` for a normalised node.

Limits: a condition is at most MAX_TEXT_LENGTH characters, with at most MAX_PARENTHESES levels of
parentheses inside one another. That is twice the MAX_DEPTH levels of and/or groups validation
allows, so redundant pairs fit, while the parser (one recursion per pair) stays far from
Python's recursion limit.
"""

import re
from dataclasses import dataclass
from typing import Any

from apps.strategies.rules.catalogue import COLUMNS, INDICATORS
from apps.strategies.rules.validate import MAX_DEPTH, OPERATORS, RuleSetError, validate_condition

MAX_TEXT_LENGTH = 2_000  # characters of one condition
MAX_PARENTHESES = 2 * MAX_DEPTH  # parentheses inside one another

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
    | (?P<timeframe>@\s*[0-9]+[A-Za-z]+)
    | (?P<op><=|>=|<|>|==|=|!=)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[0-9]+)?)
    | (?P<punct>[(),.\[\]])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or"}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    position: int


def _tokens(text: str, path: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            start = len(text) - len(text[position:].lstrip())
            raise RuleSetError({path: [f"Unexpected '{text[start]}' at character {start + 1}."]})
        kind = match.lastgroup
        tokens.append(_Token(kind, match.group(kind), match.start(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.tokens = _tokens(text, path)
        self.index = 0
        self.depth = 0  # parentheses open at the current token

    # ---- helpers ----------------------------------------------------------------------------

    def fail(self, message: str, token: _Token | None = None) -> RuleSetError:
        token = token if token is not None else self.peek()
        where = f" at character {token.position + 1} ('{token.text}')" if token else " at the end of the text"
        return RuleSetError({self.path: [f"{message}{where}."]})

    def peek(self, ahead: int = 0) -> _Token | None:
        index = self.index + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise self.fail("Something is missing")
        self.index += 1
        return token

    def at(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        return token is not None and token.kind == kind and (text is None or token.text.lower() == text)

    def expect(self, kind: str, text: str, what: str) -> None:
        if not self.at(kind, text):
            raise self.fail(f"Expected {what}")
        self.index += 1

    # ---- grammar ----------------------------------------------------------------------------

    def parse(self) -> dict[str, Any]:
        if not self.tokens:
            raise RuleSetError({self.path: ["The condition is empty."]})
        node = self.condition()
        if self.peek() is not None:
            raise self.fail("Expected 'and', 'or' or the end of the condition")
        return node

    def condition(self) -> dict[str, Any]:
        members = [self.all_of()]
        while self.at("name", "or"):
            self.index += 1
            members.append(self.all_of())
        return members[0] if len(members) == 1 else {"any": members}

    def all_of(self) -> dict[str, Any]:
        members = [self.atom()]
        while self.at("name", "and"):
            self.index += 1
            members.append(self.atom())
        return members[0] if len(members) == 1 else {"all": members}

    def atom(self) -> dict[str, Any]:
        if self.at("punct", "("):
            if self.depth >= MAX_PARENTHESES:
                raise self.fail(
                    f"Too many parentheses inside one another: at most {MAX_PARENTHESES} levels are allowed. "
                    "Remove the extra pairs, starting with the one"
                )
            self.index += 1
            self.depth += 1
            node = self.condition()
            self.expect("punct", ")", "a closing parenthesis")
            self.depth -= 1
            return node
        left = self.operand()
        op = self.operator()
        right = self.operand()
        return {"left": left, "op": op, "right": right}

    def operator(self) -> str:
        token = self.peek()
        if token is not None and token.kind == "op":
            if token.text in ("=", "==", "!="):
                raise self.fail("Equality is not offered (prices are rarely exactly equal); use <, <=, > or >=")
            self.index += 1
            return token.text
        if token is not None and token.kind == "name":
            word = token.text.lower()
            if word in OPERATORS:
                self.index += 1
                return word
            following = self.peek(1)
            if word == "crosses" and following is not None and following.text.lower() in ("above", "below"):
                self.index += 2
                return f"crosses_{following.text.lower()}"
        raise self.fail("Expected a comparison (<, <=, >, >=, crosses_above or crosses_below)")

    def operand(self) -> dict[str, Any]:
        token = self.take()
        if token.kind == "number":
            return {"value": float(token.text)}
        if token.kind != "name" or token.text.lower() in _KEYWORDS or token.text.lower() in OPERATORS:
            raise self.fail("Expected an indicator, a price column or a number", token)
        name = token.text.lower()
        if name in COLUMNS and not self.at("punct", "("):
            node: dict[str, Any] = {"column": name}
        elif name in INDICATORS or self.at("punct", "("):
            node = {"indicator": name, "args": self.arguments(), "output": self.output()}
        else:
            raise self.fail(
                f"Unknown name '{token.text}': not a price column ({', '.join(COLUMNS)}) nor an indicator", token
            )
        self.suffixes(node)
        return node

    def arguments(self) -> list[float]:
        if not self.at("punct", "("):
            return []
        self.index += 1
        args: list[float] = []
        if self.at("punct", ")"):
            self.index += 1
            return args
        while True:
            token = self.take()
            if token.kind != "number":
                raise self.fail("Expected a number", token)
            args.append(_number(token.text))
            if self.at("punct", ","):
                self.index += 1
                continue
            self.expect("punct", ")", "',' or ')'")
            return args

    def output(self) -> str | None:
        if not self.at("punct", "."):
            return None
        self.index += 1
        token = self.take()
        if token.kind != "name":
            raise self.fail("Expected the name of an output after '.'", token)
        return token.text.lower()

    def suffixes(self, node: dict[str, Any]) -> None:
        while True:
            token = self.peek()
            if token is not None and token.kind == "timeframe" and "timeframe" not in node:
                self.index += 1
                node["timeframe"] = token.text[1:].strip().lower()
            elif self.at("punct", "[") and "offset" not in node:
                self.index += 1
                offset = self.take()
                if offset.kind != "number":
                    raise self.fail("Expected a number of bars", offset)
                node["offset"] = _number(offset.text)
                self.expect("punct", "]", "']'")
            else:
                return


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def parse_condition_text(text: str, *, path: str = "condition") -> dict[str, Any]:
    """The normalised condition written in ``text`` (see the module docstring for the grammar).

    Raises RuleSetError at ``path`` for a syntax error (with the character where it happened), for
    text over MAX_TEXT_LENGTH characters or MAX_PARENTHESES levels of parentheses, and for
    anything :func:`~apps.strategies.rules.validate.validate_condition` refuses.
    """
    if not isinstance(text, str):
        raise RuleSetError({path: ["The condition must be text."]})
    if len(text) > MAX_TEXT_LENGTH:
        raise RuleSetError(
            {
                path: [
                    f"The condition is too long: {len(text):,} characters, "
                    f"at most {MAX_TEXT_LENGTH:,} are allowed. Shorten it."
                ]
            }
        )
    tree = _Parser(text, path).parse()
    return validate_condition(tree, path=path)


def format_number(value: float) -> str:
    """Shortest text that reads back as the same float (30.0 -> "30", 0.1 -> "0.1")."""
    if float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def format_operand(node: dict[str, Any]) -> str:
    if "value" in node:
        return format_number(node["value"])
    if "column" in node:
        text = str(node["column"])
    else:
        spec = INDICATORS.get(node["indicator"])
        args = node.get("args") or []
        text = node["indicator"]
        if args:
            text += "(" + ",".join(format_number(arg) for arg in args) + ")"
        if node.get("output") and spec is not None and spec.outputs:
            text += f".{node['output']}"
    if node.get("timeframe"):
        text += f"@{node['timeframe']}"
    if node.get("offset"):
        text += f"[{int(node['offset'])}]"
    return text


def format_condition(node: dict[str, Any]) -> str:
    """The text form of a condition (normalised or not); ``and`` groups inside ``or`` groups and
    ``or`` groups inside ``and`` groups are parenthesised."""
    if "all" in node:
        return " and ".join(_member(member) for member in node["all"])
    if "any" in node:
        return " or ".join(_member(member) for member in node["any"])
    return f"{format_operand(node['left'])} {node['op']} {format_operand(node['right'])}"


def _member(node: dict[str, Any]) -> str:
    text = format_condition(node)
    return f"({text})" if ("all" in node or "any" in node) else text
