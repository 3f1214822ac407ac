"""A small, safe expression language for edge conditions, transforms and loop conditions.

Blueprints are data, often written by someone other than the person running them, so their
expressions must not be able to run code, reach Python internals, or exhaust the process. The
language is therefore tokenized (lexer), parsed by hand (parser) and compiled into a tree of
plain closures (compiler) over operators that never raise (values). Both the JavaScript and the
Python spellings of the operators are accepted so that blueprints written for the TypeScript
Flowcraft work unchanged. See docs/expressions.md for the language reference.
"""

from flowcraft.expressions.compiler import MAX_EXPRESSION_LENGTH, Expression, compile_expression
from flowcraft.expressions.evaluator import ExpressionEvaluator
from flowcraft.expressions.parser import MAX_DEPTH

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPRESSION_LENGTH",
    "Expression",
    "ExpressionEvaluator",
    "compile_expression",
]
