"""alert_command: run without a shell, the alert as JSON on stdin, on its own thread, with a timeout."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from tuigpt.host import alerts
from tuigpt.host.alerts import AlertCommand
from tuigpt.run.errors import UserError
from tuigpt.run.events import Notice, RunFinished, RunStarted

from conftest import REPO
from support import Recorder, wait_for


def finished(reason: str) -> RunFinished:
    return RunFinished(iter=200, reason=reason, best_val_loss=1.5, last_val_loss=1.6, wall_seconds=1, train_seconds=1,
                       eval_seconds=0, checkpoint_seconds=0, last_checkpoint=None, tokens_seen=1)


def _script(tmp_path: Path, body: str) -> str:
    script = tmp_path / "hook.py"
    script.write_text(body)
    return f"{sys.executable} {script} {{kind}} {{event}}"


def test_alert_command_gets_the_event_json_on_stdin_and_the_summary_as_words(tmp_path: Path) -> None:
    out = tmp_path / "calls.jsonl"
    command = _script(tmp_path, "import json, sys\n"
                      f"with open({str(out)!r}, 'a') as f:\n"
                      "    f.write(json.dumps({'argv': sys.argv[1:], 'stdin': json.load(sys.stdin)}) + '\\n')\n")
    rec = Recorder()
    hook = AlertCommand(command, rec)
    hook(RunStarted(run_name="tiny", run_dir="/runs/tiny", config_path=None, config={}, n_params=1, device="cpu",
                    dtype="float32", dtype_reason="", start_iter=0, max_iters=200, tokens_per_iter=1,
                    flops_per_token=1, peak_flops=None, peak_label="", eval_interval=10, resumed=False))
    hook(Notice(level="info", message="not an alert"))
    hook(finished("done"))
    hook.close()
    calls = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(calls) == 1 and hook.calls == 1
    assert calls[0]["argv"] == ["done", "tiny: finished at iter 200, best val 1.5000"]
    payload = calls[0]["stdin"]
    assert payload["kind"] == "done" and payload["run_name"] == "tiny" and payload["run_dir"] == "/runs/tiny"
    assert payload["event"]["type"] == "finish" and payload["event"]["iter"] == 200
    assert rec.events == []  # it worked: nothing to warn about


def test_a_failing_or_hanging_alert_command_is_a_warning_not_a_stall(tmp_path: Path) -> None:
    rec = Recorder()
    failing = AlertCommand(_script(tmp_path, "import sys; sys.stderr.write('no route to phone\\n'); sys.exit(3)"), rec)
    failing(finished("done"))
    failing.close()
    assert any("exited with 3" in n.message and "no route to phone" in n.message for n in rec.of(Notice))
    hanging = AlertCommand(_script(tmp_path, "import time; time.sleep(60)"), rec, timeout=0.5)
    hanging(finished("done"))  # returns at once: the command runs on its own thread
    wait_for(lambda: any("did not finish in 0.5 s" in n.message for n in rec.of(Notice)), 30, "the timeout warning")
    hanging.close()


def test_an_alert_command_that_cannot_run_is_refused_before_training() -> None:
    with pytest.raises(UserError, match="'no-such-notifier' is not an executable program"):
        AlertCommand("no-such-notifier {event}", lambda e: None)


def test_a_file_name_template_gets_machine_safe_placeholders(tmp_path: Path) -> None:
    """`{event}` is a sentence with spaces: a template like `touch alerts/{event}.txt` made a file name of it (issue
    27). {run}, {kind}, {iter} and {time} hold no space or slash."""
    folder = tmp_path / "alerts"
    folder.mkdir()
    hook = AlertCommand(f"touch {folder}/{{run}}-{{kind}}-{{iter}}-{{time}}.alert", Recorder())
    hook(RunStarted(run_name="tiny", run_dir="/runs/tiny", config_path=None, config={}, n_params=1, device="cpu",
                    dtype="float32", dtype_reason="", start_iter=0, max_iters=200, tokens_per_iter=1,
                    flops_per_token=1, peak_flops=None, peak_label="", eval_interval=10, resumed=False))
    event = finished("done")
    hook(event)
    wait_for(lambda: hook.calls == 1, 30, "the alert command")
    hook.close()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(event.time))
    assert [p.name for p in folder.iterdir()] == [f"tiny-done-200-{stamp}.alert"]


def test_the_readme_documents_every_placeholder() -> None:
    readme = (REPO / "README.md").read_text()
    placeholders = set(re.findall(r'"(\{\w+\})"', Path(alerts.__file__).read_text()))
    assert placeholders == {"{event}", "{kind}", "{run}", "{iter}", "{time}"}
    for placeholder in placeholders:
        assert f"`{placeholder}`" in readme, placeholder
