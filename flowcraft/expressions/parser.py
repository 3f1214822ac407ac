"""Tokens to a syntax tree, by a hand-written Pratt parser with bounded nesting.

Parsing by hand (instead of `ast`) keeps the grammar closed: only the operators listed here
exist. Same-precedence operators and postfix access chains are kept flat, so a long expression
costs no deep recursion, and nesting beyond MAX_DEPTH is refused rather than overflowing.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flowcraft.expressions.lexer import Token, fail_at, tokenize

MAX_DEPTH = 100

# --------------------------------------------------------------------------------------------
# Syntax tree
# --------------------------------------------------------------------------------------------


class Node:
    __slots__ = ()


class Const(Node):
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Name(Node):
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Access(Node):
    """A whole postfix chain `base.a[b]?.c`, kept flat so long chains cost no recursion."""

    __slots__ = ("base", "steps")

    def __init__(self, base: Node) -> None:
        self.base = base
        self.steps: list[Node] = []


class Unary(Node):
    __slots__ = ("op", "operand")

    def __init__(self, op: str, operand: Node) -> None:
        self.op = op
        self.operand = operand


class Chain(Node):
    """Same-precedence binary operators applied left to right: `a + b - c`, `a && b && c`.

    Kept flat (instead of a left-deep tree) so long chains cost no evaluation recursion.
    """

    __slots__ = ("operands", "ops")

    def __init__(self, first: Node) -> None:
        self.operands: list[Node] = [first]
        self.ops: list[str] = []


class Call(Node):
    __slots__ = ("arg",)

    def __init__(self, arg: Node) -> None:
        self.arg = arg


# --------------------------------------------------------------------------------------------
# Pratt parser
# --------------------------------------------------------------------------------------------

_OR, _AND, _NOT, _COMPARE, _SUM, _PRODUCT, _UNARY = 10, 20, 30, 40, 50, 60, 70

# token text -> (binding power, canonical operator)
_INFIX: dict[str, tuple[int, str]] = {
    "or": (_OR, "or"), "||": (_OR, "or"),
    "and": (_AND, "and"), "&&": (_AND, "and"),
    "==": (_COMPARE, "=="), "===": (_COMPARE, "=="),
    "!=": (_COMPARE, "!="), "!==": (_COMPARE, "!="),
    "<": (_COMPARE, "<"), "<=": (_COMPARE, "<="), ">": (_COMPARE, ">"), ">=": (_COMPARE, ">="),
    "in": (_COMPARE, "in"),
    "+": (_SUM, "+"), "-": (_SUM, "-"),
    "*": (_PRODUCT, "*"), "/": (_PRODUCT, "/"), "%": (_PRODUCT, "%"),
}
_LITERAL_WORDS: dict[str, Any] = {
    "true": True, "True": True, "false": False, "False": False,
    "null": None, "None": None, "undefined": None,
}
_RESERVED = frozenset({"and", "or", "not", "in"})


class Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokenize(source)
        self.index = 0
        self.depth = 0
        self.names: set[str] = set()

    def fail(self, message: str, token: Token) -> NoReturn:
        fail_at(self.source, message, token[2])

    def unexpected(self, token: Token) -> NoReturn:
        if token[0] == "end":
            self.fail("unexpected end of expression", token)
        self.fail(f"unexpected {token[1]!r}", token)

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.tokens[self.index]
        if token[0] != "op" or token[1] != text:
            if token[0] == "end":
                self.fail(f"expected {text!r} but the expression ended", token)
            self.fail(f"expected {text!r} but found {token[1]!r}", token)
        self.index += 1
        return token

    def parse(self) -> Node:
        if self.tokens[0][0] == "end":
            self.fail("empty expression", self.tokens[0])
        node = self.expression(0)
        token = self.tokens[self.index]
        if token[0] != "end":
            self.unexpected(token)
        return node

    def nested(self, rbp: int, token: Token) -> Node:
        """Parse a sub-expression one level deeper; the only place parser recursion grows."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nested deeper than {MAX_DEPTH} levels", token)
        node = self.expression(rbp)
        self.depth -= 1
        return node

    def expression(self, rbp: int) -> Node:
        left = self.prefix()
        chain_bp = 0  # binding power of the flat chain `left` currently is, if any
        while True:
            token = self.tokens[self.index]
            kind, text = token[0], token[1]
            if kind == "op" or kind == "word":
                if text == "not" and kind == "word":
                    after = self.tokens[self.index + 1]
                    if after[0] != "word" or after[1] != "in":
                        return left
                    bp, op, width = _COMPARE, "not in", 2
                elif text in _INFIX:
                    bp, op = _INFIX[text]
                    width = 1
                else:
                    return left
            else:
                return left
            if bp <= rbp:
                return left
            self.index += width
            if bp == _COMPARE and chain_bp == _COMPARE:
                self.fail("chained comparisons are ambiguous; add parentheses", token)
            right = self.nested(bp, token)
            # Same-level operators extend the chain (comparisons never get here twice).
            chain = left if chain_bp == bp and isinstance(left, Chain) else Chain(left)
            chain.ops.append(op)
            chain.operands.append(right)
            left, chain_bp = chain, bp

    def prefix(self) -> Node:
        token = self.advance()
        kind, text = token[0], token[1]
        node: Node
        if kind == "num" or kind == "str":
            node = Const(token[3])
        elif kind == "word":
            if text in _LITERAL_WORDS:
                node = Const(_LITERAL_WORDS[text])
            elif text == "not":
                return Unary("not", self.nested(_NOT, token))
            elif text in _RESERVED:
                self.unexpected(token)
            elif text == "len" and self.tokens[self.index][1] == "(" and (
                self.tokens[self.index][0] == "op"
            ):
                self.index += 1
                arg = self.nested(0, token)
                if self.tokens[self.index][1] == ",":
                    self.fail("len() takes exactly one argument", self.tokens[self.index])
                self.expect(")")
                node = Call(arg)
            else:
                self.names.add(text)
                node = Name(text)
        elif kind == "op":
            if text == "(":
                if self.tokens[self.index][1] == ")":
                    self.fail("empty parentheses", self.tokens[self.index])
                node = self.nested(0, token)
                self.expect(")")
            elif text == "-":
                return Unary("-", self.nested(_UNARY, token))
            elif text == "!":
                return Unary("not", self.nested(_UNARY, token))
            else:
                self.unexpected(token)
        else:
            self.unexpected(token)
        return self.postfix(node)

    def postfix(self, node: Node) -> Node:
        access: Access | None = None
        while True:
            token = self.tokens[self.index]
            if token[0] != "op":
                return node
            text = token[1]
            if text == "." or text == "?.":
                self.index += 1
                if text == "?." and self.tokens[self.index][1] == "[":
                    continue  # `a?.[k]` is `a[k]`: the `[` is handled on the next turn
                name = self.advance()
                if name[0] != "word":
                    self.fail(f"expected a member name after {text!r}", name)
                step: Node = Const(name[1])
            elif text == "[":
                self.index += 1
                step = self.nested(0, token)
                self.expect("]")
            elif text == "(":
                self.fail("only len(...) can be called", token)
            else:
                return node
            if access is None:
                access = Access(node)
                node = access
            access.steps.append(step)


__all__ = ["MAX_DEPTH", "Access", "Call", "Chain", "Const", "Name", "Node", "Parser", "Unary"]
