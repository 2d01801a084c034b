"""The headless output's own thread: a blocked output holds no writer up, and what it left out is said."""

from __future__ import annotations

import threading

import pytest
from support.live_run import wait_for

from tuigpt.ui import line_output
from tuigpt.ui.line_output import BackgroundOutput


class StuckStream:
    """A terminal stopped with ctrl+s: the first write blocks until ``release``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.entered = threading.Event()
        self.released = threading.Event()

    def write(self, text: str) -> None:
        self.entered.set()
        self.released.wait()
        self.lines.append(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_lines_past_the_queue_are_counted_and_said_where_they_were_left_out() -> None:
    stream = StuckStream()
    out = BackgroundOutput(stream, capacity=3)  # type: ignore[arg-type]
    out.write("line 0\n")
    assert stream.entered.wait(30), "the thread took the first line"
    for k in range(1, 10):
        out.write(f"line {k}\n")  # returns at once although the stream is stuck (else the test hangs)
    assert out.dropped == 6
    stream.released.set()
    wait_for(lambda: len(stream.lines) == 4, 30, "the queued lines written")
    out.write("line 10\n")
    out.close()
    assert stream.lines == ["line 0\n", "line 1\n", "line 2\n", "line 3\n",
                            "... 6 lines not printed: the output was not being read (metrics.jsonl has them)\n",
                            "line 10\n"]
    assert out.isatty()


def test_lines_left_out_at_the_end_are_said_by_close() -> None:
    stream = StuckStream()
    out = BackgroundOutput(stream, capacity=2)  # type: ignore[arg-type]
    out.write("line 0\n")
    assert stream.entered.wait(30)
    for k in range(1, 5):
        out.write(f"line {k}\n")
    out.write("a sample of\nthree lines\n--- end\n")
    stream.released.set()
    out.close()
    assert stream.lines == ["line 0\n", "line 1\n", "line 2\n",
                            "... 5 lines not printed: the output was not being read (metrics.jsonl has them)\n"]


def test_an_output_that_is_gone_is_dropped_quietly() -> None:
    class Gone(StuckStream):
        def write(self, text: str) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    out = BackgroundOutput(Gone())  # type: ignore[arg-type]
    for k in range(100):
        out.write(f"line {k}\n")
    out.close()
    assert out.broken


def test_no_output_at_all_is_no_error() -> None:
    out = BackgroundOutput(None)  # stdout closed at the start (`>&-`): sys.stdout is None
    out.write("line\n")
    out.close()
    assert out.broken and not out.isatty()


def test_close_gives_up_on_an_output_that_never_moves_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(line_output, "CLOSE_PATIENCE", 0.3)
    stream = StuckStream()
    out = BackgroundOutput(stream, capacity=2)  # type: ignore[arg-type]
    for k in range(5):
        out.write(f"line {k}\n")
    assert stream.entered.wait(30)
    out.close()  # returns (the process can exit and free its run lock) with the stream still stuck
    assert stream.lines == []
    stream.released.set()


def test_a_real_pipe_gets_the_lines_in_order_before_close_returns() -> None:
    import os

    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as stream:
        out = BackgroundOutput(stream)
        for k in range(50):
            out.write(f"{k} é\n")
        chunks: list[bytes] = []
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 65536), b"")))
        reader.start()
        out.close()
    reader.join(30)
    os.close(read_fd)
    assert b"".join(chunks).decode() == "".join(f"{k} é\n" for k in range(50))
