"""The run report, the aha-moment tracker and the optional trackers.

The report is rendered from a recorded run (tests/data/demo_run_small, a trimmed copy of the real demo)
and opened in headless Chromium, driven over the DevTools protocol: the page must load with no console
error, show every plot and a working sample browser, and fetch nothing but itself.
"""

import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1kit.cli.main import main
from r1kit.core.errors import DataError
from r1kit.core.tracking import make_trackers
from r1kit.report import aha
from r1kit.report.html import write_report
from r1kit.report.plots import figure_specs

RECORDED = Path(__file__).parent / "data" / "demo_run_small"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


# ----------------------------------------------------------------------------- the tracker

def test_markers_are_found_whatever_the_case_and_language():
    found = aha.find_markers
    assert found("Wait, that is wrong.") == ["wait"]
    assert found("WAIT. wAiT.") == ["wait"]
    assert found("ＷＡＩＴ, full-width letters") == ["wait"]  # full-width Latin counts as ASCII
    assert found("awaiting the waiter") == []  # whole words only for Latin markers
    assert found("Let me\n  re-check this") == ["let me re-check", "re-check"]
    assert found("recheck and re check") == ["re-check"]  # a hyphen in a marker is optional
    assert found("I verified it; verifying again") == ["verif*"]
    assert found("Reevaluate.") == ["re-evaluate"]
    assert found("我们等等再算") == ["等等"]  # Chinese markers match inside a sentence
    assert found("重新计算一下，验证结果") == ["重新", "验证"]
    assert found("38 + 18 = 56") == []
    assert found("hold on, hmm", ["Hold on", "hmm"]) == ["Hold on", "hmm"]  # a custom list
    assert aha.marker_spans("Wait, wait. 等等", ["wait", "等等"]) == [(0, 4), (6, 10), (12, 14)]
    with pytest.raises(ValueError):
        aha.compile_markers([" "])


def test_tracker_counts_per_step_and_finds_first_reflective_correct_answers():
    def s(step, text, acc=None, **kw):
        return {"step": step, "completion": text, "rewards": {} if acc is None else {"accuracy": acc}, **kw}

    samples = [
        s(1, "<think>1+1=2</think><answer>2</answer>", 1.0),
        s(1, "<think>Wait, 1+1=3</think><answer>3</answer>", 0.0),  # reflects, but wrong
        s(2, "<think>2+2=5? WAIT, let me re-check: 4</think><answer>4</answer>", 1.0),
        s(2, "<think>等等，重新算</think><answer>4</answer>", 1.0),
        s(2, "<think>4</think><answer>4</answer>", 1.0),
        s(2, "no accuracy reward: wait", None),  # correctness unknown: counted in the share only
        s(3, "verify: 6", None, correct=True),  # an evaluation record says `correct` itself
    ]
    stats = aha.track(samples)
    by_step = {row["step"]: row for row in stats["steps"]}
    assert [by_step[k]["n"] for k in (1, 2, 3)] == [2, 4, 1]
    assert by_step[1]["with_marker"] == 1 and by_step[1]["share"] == 0.5
    assert by_step[1]["n_correct"] == 1 and by_step[1]["share_correct"] == 0.0
    assert by_step[2]["with_marker"] == 3 and by_step[2]["share"] == 0.75
    assert by_step[2]["n_correct"] == 3 and by_step[2]["correct_with_marker"] == 2
    assert by_step[2]["per_marker"]["wait"] == 2 and by_step[2]["per_marker"]["等等"] == 1
    assert stats["per_marker"]["wait"]["first_step"] == 1
    assert stats["per_marker"]["wait"]["first_correct"] == {"step": 2, "index": 0}
    assert stats["per_marker"]["重新"]["first_correct"] == {"step": 2, "index": 1}
    assert stats["per_marker"]["double-check"] == {"total": 0, "first_step": None, "first_correct": None}
    assert [(e["step"], e["samples"]) for e in stats["first_correct_steps"]] == [(2, [0, 1]), (3, [0])]
    assert stats["first_correct_steps"][0]["markers"] == ["wait", "let me re-check", "re-check", "等等", "重新"]


# ----------------------------------------------------------------------------- headless Chromium

def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class DevTools:
    """Chromium over --remote-debugging-pipe: DevTools protocol messages are JSON texts ended by a NUL
    byte, read by the browser from fd 3 and written by it to fd 4. No websocket, no port, no package."""

    def __init__(self, binary: str, profile: Path, log: Path):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # the browser's ends go above fd 10 first, so that placing them on 3 and 4 cannot clobber one another
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def give_fds():  # in the child, before exec: only fds 3 and 4 are inherited (others are CLOEXEC)
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.log = open(log, "wb")
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                      "--remote-debugging-pipe", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     close_fds=False, preexec_fn=give_fds)
        os.close(child_r)
        os.close(child_w)
        self.buffer, self.next_id, self.events = b"", 0, []

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium; its log: " + self._log_tail())
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe; its log: " + self._log_tail())
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def _log_tail(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-2000:]

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def evaluate(self, expression: str, session: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def drain(self, seconds: float) -> None:
        """Collect events for a while (errors thrown after load)."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read(deadline))
        except TimeoutError:
            pass

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error/assert calls and browser-logged errors (failed loads)."""
        errors = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(json.dumps(p.get("exceptionDetails"))[:500])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append(json.dumps(p.get("args"))[:500])
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append(json.dumps(p["entry"])[:500])
        return errors

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)
        self.log.close()


@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        reason = "no chromium on PATH: `bash scripts/setup.sh --test` installs Debian's chromium package with apt"
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must run the browser test)")
        pytest.skip(reason)
    return binary


def craft_run(root: Path) -> Path:
    """A second run to overlay on the recorded one, made up for the test: it has evaluation metrics and
    samples, reflective correct answers for the aha tracker to link, and text that could break a page."""
    run = root / "crafted"
    run.mkdir()
    metrics = [json.loads(line) for line in (RECORDED / "metrics.jsonl").read_text().splitlines()]
    lines = [{"step": 0, "eval/pass@1": 0.0, "eval/cons@4": 0.0, "eval/format_rate": 0.1, "eval/mean_length": 60.0}]
    for m in metrics:
        m = {**m, "reward": m["reward"] * 0.8, "accuracy": min(1.0, m["step"] / 20), "my/new_metric": m["step"] ** 0.5}
        if m["step"] % 10 == 0:
            m.update({"eval/pass@1": m["step"] / 40, "eval/cons@4": m["step"] / 30, "eval/format_rate": 0.9,
                      "eval/mean_length": 40.0})
        lines.append(m)
    partial = '{"step": 21, "rew'  # a line still being written
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines) + partial)

    def sample(step, text, correct, reward):
        return {"step": step, "prompt_id": f"p{step}", "question": "What is 2 + 2?", "answer": "4",
                "completion": text, "reward": reward, "rewards": {"format": 1.0, "accuracy": float(correct)},
                "advantage": 0.5 if correct else -0.5, "length": len(text), "truncated": False}

    samples = [
        sample(4, "<think>2+2=4</think> <answer>4</answer>", True, 2.0),
        sample(4, "<think>2+2=5</think> <answer>5</answer> </script><script>alert(1)</script>", False, 1.0),
        sample(6, "<think>2+2=5. Wait, let me re-check: 2+2=4 😀</think> <answer>4</answer>", True, 2.0),
        sample(6, "<think>等等，2+2=3</think> <answer>3</answer>", False, 1.0),
        sample(6, "<think>重新算: 4. Verified.</think> <answer>4</answer>", True, 2.0),
    ]
    (run / "samples.jsonl").write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    evals = [{"step": 10, "problem_id": "e1", "sample": k, "prompt": "User: What is 3 + 4?. Assistant: <think>",
              "completion": f"<think>3+4</think> <answer>{7 + k}</answer>", "extracted": str(7 + k), "gold": "7",
              "correct": k == 0, "format_ok": True, "length": 12, "truncated": False, "groups": {}}
             for k in range(2)]
    (run / "eval_samples.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evals))
    return run


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


PAGE_STATE = """(async () => {
  const all = s => Array.from(document.querySelectorAll(s));
  const set = (id, v) => { const e = document.getElementById(id); e.value = String(v);
                           e.dispatchEvent(new Event("change")); };
  const out = {ready: document.body.getAttribute("data-ready"),
               plots: all("figure.plot img").map(i => [i.closest("figure").id, i.complete ? i.naturalWidth : 0]),
               runs: all("#sb-run option").map(o => o.textContent)};
  set("sb-run", 0); set("sb-step", 8);
  out.steps = all("#sb-step option").map(o => Number(o.value));
  out.shown = all("#sb-list .sample").length;
  set("sb-filter", "correct");
  out.correct = all("#sb-list .sample").length;
  out.correctCards = all("#sb-list .sample.correct").length;
  set("sb-filter", "incorrect");
  out.incorrect = all("#sb-list .sample.incorrect").length;
  set("sb-run", 1); set("sb-set", "eval"); set("sb-filter", "all");
  out.evalShown = all("#sb-list .sample").length;
  set("sb-set", "train"); set("sb-step", 4);
  out.scriptText = all("#sb-list pre").map(p => p.textContent).join("\\n");
  out.injected = document.querySelectorAll("#sb-list script").length;
  const link = document.querySelector("a.sample-link");
  out.link = link.getAttribute("href");
  link.click();
  await new Promise(r => setTimeout(r, 200));
  const target = document.querySelector(".sample.target");
  out.target = target ? target.id : null;
  out.targetMarks = target ? Array.from(target.querySelectorAll("mark")).map(m => m.textContent) : [];
  return out;
})()"""


def test_report_from_recorded_run_loads_in_headless_chromium(tmp_path, chromium):
    crafted = craft_run(tmp_path)
    page = write_report([RECORDED, crafted], out=tmp_path / "report")
    assert page == tmp_path / "report" / "report.html"
    pngs = {p.stem: p for p in page.parent.glob("*.png")}
    assert {"reward", "eval", "length", "training", "speed", "aha", "other"} <= set(pngs)
    sizes = {name: png_size(p) for name, p in pngs.items()}
    assert all(p.stat().st_size > 5000 and min(sizes[n]) > 200 for n, p in pngs.items()), sizes

    browser = DevTools(chromium, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Page.navigate", {"url": page.as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        state = browser.evaluate(PAGE_STATE, session)
        browser.drain(0.5)
        errors = browser.console_errors()
        requests = [e["params"]["request"]["url"] for e in browser.events
                    if e.get("method") == "Network.requestWillBeSent"]
    finally:
        browser.close()

    assert errors == [], errors
    # self-contained: the page itself and data: URLs (the embedded plots), nothing from a network
    assert all(u == page.as_uri() or u.startswith("data:") for u in requests), requests
    assert state["ready"] == "1"  # the browser script ran to its end
    plots = dict(state["plots"])
    assert set(plots) == {f"plot-{name}" for name in pngs}
    for name, png in pngs.items():  # every plot decoded, at the size of its PNG file
        assert plots[f"plot-{name}"] == sizes[name][0], (name, plots)
    assert state["runs"] == ["demo_run_small", "crafted"]
    recorded = [json.loads(line) for line in (RECORDED / "samples.jsonl").read_text().splitlines()]
    step8 = [r for r in recorded if r["step"] == 8]
    assert state["steps"] == sorted({r["step"] for r in recorded})
    assert state["shown"] == len(step8) == 8
    n_correct = sum(r["rewards"]["accuracy"] == 1 for r in step8)
    assert state["correct"] == state["correctCards"] == n_correct == 1
    assert state["incorrect"] == len(step8) - n_correct
    assert state["evalShown"] == 2
    assert "</script><script>alert(1)</script>" in state["scriptText"] and state["injected"] == 0
    # the aha tracker's first link opens the first reflective correct answer, markers highlighted
    assert state["link"] == "#s-1-train-6-0" and state["target"] == "s-1-train-6-0"
    assert state["targetMarks"] == ["Wait", "let me re-check"]


def test_report_of_a_fresh_training_run_via_the_cli(tmp_path, tiny_model, capsys):
    """The trainer's files as written today (with evaluation) render; guards the report against drift."""
    from r1kit.trainers.grpo.config import make_config
    from r1kit.trainers.grpo.trainer import train

    run = tmp_path / "run"
    config = make_config(overrides=dict(
        model=tiny_model, max_steps=2, num_generations=2, per_device_train_batch_size=4, max_completion_length=8,
        eval_steps=2, eval_benchmark="arithmetic", eval_limit=2, eval_num_samples=2, save_steps=0,
        log_completions_steps=0, output_dir=str(run), torch_threads=1))
    train(config, show_progress=False)
    capsys.readouterr()
    assert main(["report", str(run), "--extra_markers", "hmm"]) == 0
    page = run / "report" / "report.html"
    assert capsys.readouterr().out.startswith(f"r1kit: report written to {page} (plots: aha.png, eval.png, length.png")
    for name in ("reward", "eval", "length", "training", "speed", "aha"):
        assert png_size(run / "report" / f"{name}.png")[0] > 200
    text = page.read_text()
    assert "<code>hmm</code>" in text and "<code>wait</code>" in text
    data = json.loads(text.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    samples = data["runs"][0]["samples"]
    assert sorted(samples["train"]) == ["1", "2"] and [len(v) for v in samples["train"].values()] == [4, 4]
    assert sorted(samples["eval"]) == ["0", "2"] and len(samples["eval"]["2"]) == 2 * 2
    assert sorted(samples["eval_no_think"]) == ["0", "2"]  # the same problems, the think removed
    assert all(x["c"].startswith("<think>\n</think>\n<answer>") for x in samples["eval_no_think"]["2"])


def test_report_tolerates_old_and_partial_runs_and_rejects_non_runs(tmp_path, capsys):
    old = tmp_path / "old"
    old.mkdir()
    # an older run: a few keys only, no samples, no config; a garbled line is skipped
    old.joinpath("metrics.jsonl").write_text(
        '{"step": 1, "reward": 0.1}\nnot json\n{"step": 2, "reward": 0.3, "kl": NaN, "entropy": 2.0}\n')
    page = write_report(old, out=tmp_path / "old.html")
    assert page == tmp_path / "old.html"
    assert "1 of 3 lines could not be read" in capsys.readouterr().err  # said, not silently dropped
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["reward.png", "training.png"]
    text = page.read_text()
    assert "no samples.jsonl" in text and "No samples recorded" in text
    with pytest.raises(DataError, match="not an r1kit run folder"):
        write_report(tmp_path / "old" / "..", out=tmp_path / "x")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"r1kit: error: run {tmp_path / 'missing'}: no such folder"
    assert main(["report", str(old), "--markers", "*"]) == 2
    assert capsys.readouterr().err.strip() == "r1kit: error: --markers: reflection marker '*' is empty"


def test_report_shows_alerts_at_the_top_with_the_runs_thresholds(tmp_path):
    run = tmp_path / "copying"
    run.mkdir()
    rows = [{"step": 0, "eval/pass@1": 0.1}]
    rows += [{"step": s, "reward": 0.5, "entropy": 1.0, "kl": 0.01 if s < 4 else 0.3, "format_rate": 0.5,
              "accuracy": 0.1, "template_copy_rate": 0.1 * s} for s in range(1, 7)]
    run.joinpath("metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the run's own thresholds: KL 0.3 is over its limit of 0.2 (the default, 1.0, would stay silent)
    run.joinpath("config.json").write_text(json.dumps({"alert_kl_max": 0.2, "alert_template_copy_max": 0.25}))
    text = write_report(run, out=tmp_path / "alerts.html").read_text()
    alerts = text[text.index('<h2 id="alerts">'):text.index('<h2 id="runs">')]
    assert text.index('<h2 id="alerts">') < text.index('<h2 id="plots">')
    # template copies 0.3 > 0.25 at step 3, KL 0.3 > 0.2 at step 4, in step order, each with its metric
    assert alerts.count("<tr><td>") == 2
    assert alerts.index("template_copies") < alerts.index("kl_exploding")
    assert "<td>3</td><td>template_copies</td><td>template_copy_rate = 0.300</td>" in alerts
    assert "<td>4</td><td>kl_exploding</td><td>kl = 0.300</td>" in alerts
    run.joinpath("config.json").write_text(json.dumps({"alert_template_copy_max": 0}))
    quiet = write_report(run, out=tmp_path / "quiet.html").read_text()
    assert "No alerts." in quiet


def test_template_copy_rate_is_plotted_with_accuracy_and_format():
    specs = figure_specs(["accuracy", "format_rate", "template_copy_rate"])
    panel = specs[0]["panels"][0]
    assert specs[0]["name"] == "reward" and panel["ylim"] == (0, 1)
    assert panel["series"] == [("accuracy", "accuracy"), ("format_rate", "format rate"),
                               ("template_copy_rate", "template copies")]


# ----------------------------------------------------------------------------- trackers

def test_trackers_mirror_metrics_and_fail_clearly_without_their_package(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown tracker"):
        make_trackers(["mlflow"], tmp_path, {})
    monkeypatch.setitem(sys.modules, "trackio", None)  # as if not installed
    missing = r"report_to=trackio: the 'trackio' package is not installed \(pip install trackio\)"
    with pytest.raises(ValueError, match=missing):
        make_trackers(["trackio"], tmp_path, {})
    assert make_trackers("none", tmp_path, {}) == [] and make_trackers([], tmp_path, {}) == []
    # the real trackers, their logged values read back: tests/test_trackers.py
