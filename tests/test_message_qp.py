"""qp_encode's run-at-a-time fast path gives exactly what the per-character encoder gave."""

from __future__ import annotations

import quopri

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.message import QP_LINE_CHARS, qp_encode


def reference_qp(text: str, *, start_column: int = 0) -> tuple[str, int]:
    """The per-character encoder qp_encode replaced (the specification)."""

    def one(ch: str) -> str:
        code = ord(ch)
        if ch == "=" or code > 126 or (code < 32 and ch != "\t"):
            return "".join(f"={b:02X}" for b in ch.encode("utf-8"))
        return ch

    out: list[str] = []
    col = start_column
    lines = text.split("\n")
    for index, line in enumerate(lines):
        for pos, ch in enumerate(line):
            enc = one(ch)
            if ch in " \t" and pos == len(line) - 1:
                enc = f"={ord(ch):02X}"
            if col + len(enc) > QP_LINE_CHARS - 1:
                out.append("=\r\n")
                col = 0
            out.append(enc)
            col += len(enc)
        if index < len(lines) - 1:
            out.append("\r\n")
            col = 0
    return "".join(out), col


TEXT = st.lists(st.sampled_from([*"ab =\t\n.~\r\x00é—😀", "x" * 40, " " * 3]), max_size=60).map(
    "".join
)


@settings(max_examples=400, deadline=None)
@given(TEXT, st.sampled_from([0, 1, 74, 75, 76, 90]))
def test_same_output_as_the_per_character_encoder(text: str, start: int) -> None:
    assert qp_encode(text, start_column=start) == reference_qp(text, start_column=start)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_decodes_back_and_keeps_lines_short(text: str) -> None:
    encoded, _ = qp_encode(text.replace("\r", ""))
    assert all(len(line) <= QP_LINE_CHARS for line in encoded.split("\r\n"))
    decoded = quopri.decodestring(encoded.encode("ascii")).decode("utf-8")
    assert decoded.replace("\r\n", "\n") == text.replace("\r", "")


def test_long_plain_line_is_cut_at_75_columns_from_the_start_column() -> None:
    encoded, col = qp_encode("y" * 100, start_column=70)
    assert encoded == "y" * 5 + "=\r\n" + "y" * 75 + "=\r\n" + "y" * 20
    assert col == 20
