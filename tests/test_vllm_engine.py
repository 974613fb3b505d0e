"""The vLLM rollout engine without vLLM: a fake LLM that records what it is sent and answers like vLLM V1.

Checks the conversion of vLLM outputs into the HF engine's Rollout layout, the weight-sync bookkeeping
(names, dtype, tied weights, skipping unchanged versions, LoRA merged out of place), sleep mode, and the
message when vLLM is missing.
"""

import copy
import sys
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
import torch

from r1kit.models.loading import add_lora, load_model, load_tokenizer
from r1kit.rollout.sampling import generate
from r1kit.rollout.vllm_engine import INSTALL_HINT, VLLMEngine, weight_buckets

# --- a fake vLLM: the LLM surface VLLMEngine uses, with RequestOutput-shaped answers


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


@dataclass
class FakeLogprob:
    logprob: float
    rank: int = 1


@dataclass
class FakeCompletion:  # vllm.CompletionOutput
    index: int
    text: str
    token_ids: list
    logprobs: list  # per position: {token_id: Logprob}
    finish_reason: str


@dataclass
class FakeRequestOutput:  # vllm.RequestOutput
    prompt_token_ids: list
    outputs: list


DECOY = 5  # a token id put first in every logprobs dict: the sampled token must be looked up by id


class FakeLLM:
    """Records constructor kwargs and every call in `events`; `replies[b]` scripts prompt b's samples as
    (token_ids, logprobs, finish_reason) in sample order. Samples are returned in reverse order."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.events = []
        self.replies = None
        model = SimpleNamespace(load_weights=lambda weights: self.events.append(("load", list(weights))))
        runner = SimpleNamespace(model_runner=SimpleNamespace(model=model))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=runner)))

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.events.append(("generate", prompts, sampling_params))
        outs = []
        for b, prompt in enumerate(prompts):
            samples = []
            for j, (ids, lps, finish) in enumerate(self.replies[b]):
                steps = [{DECOY: FakeLogprob(-99.0), t: FakeLogprob(lp)} if t != DECOY else {t: FakeLogprob(lp)}
                         for t, lp in zip(ids, lps)]
                samples.append(FakeCompletion(j, "vLLM's text, not used", list(ids), steps, finish))
            outs.append(FakeRequestOutput(prompt["prompt_token_ids"], samples[::-1]))
        return outs

    def reset_prefix_cache(self):
        self.events.append(("reset",))

    def sleep(self, level):
        self.events.append(("sleep", level))

    def wake_up(self, tags=None):
        self.events.append(("wake_up", tuple(tags)))


def make_engine(path, **kw):
    return VLLMEngine(path, max_model_len=64, llm_factory=FakeLLM, sampling_params_factory=FakeSamplingParams, **kw)


def loads(events):
    """Every (name, tensor) sent through load_weights, in order."""
    return [w for e in events if e[0] == "load" for w in e[1]]


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_tokenizer(tiny_model)


# --- (1) outputs -> Rollout


def test_replaying_the_hf_engine_gives_its_rollout_exactly(tiny_model, tok):
    """vLLM answering with the HF engine's samples must give back the HF engine's Rollout, field for field."""
    model = load_model(tiny_model)
    prompts = ["what is 1+2?", "hi", "a much longer prompt than the others"]
    # vowels as stop strings, so that rows end by stop string, by EOS and by length
    kw = dict(num_generations=3, max_new_tokens=12, temperature=0.8, max_prompt_length=12, stop_strings=tuple("aeiou"))
    hf = generate(model, tok, prompts, generator=torch.Generator().manual_seed(0), **kw)
    assert hf.prompt_truncated == 1 and hf.truncated.any() and not hf.truncated.all()
    assert len(set(hf.lengths.tolist())) > 3
    m = hf.completion_mask.bool()
    engine = make_engine(tiny_model)
    engine.llm.replies = [[(hf.completion_ids[i][m[i]].tolist(), hf.logprobs[i][m[i]].tolist(),
                            "length" if hf.truncated[i] else "stop") for i in range(b * 3, b * 3 + 3)]
                          for b in range(3)]
    r = engine.generate(tok, prompts, seed=0, **kw)
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "logprobs", "truncated"):
        a, b = getattr(r, name), getattr(hf, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert r.completions == hf.completions and r.prompt_truncated == hf.prompt_truncated == 1
    # the prompts reach vLLM unpadded, left-truncated to max_prompt_length
    _, requests, _ = engine.llm.events[-1]
    assert [q["prompt_token_ids"] for q in requests] == [tok(p)["input_ids"][-12:] for p in prompts]


def test_outputs_become_the_hf_layout(tiny_model, tok):
    tok = copy.deepcopy(tok)
    tok.pad_token = "<unk>"  # a pad id that is not 0, so padding cannot pass for zeros
    eos, close, pad = tok.eos_token_id, tok.convert_tokens_to_ids("</answer>"), tok.pad_token_id
    assert pad != 0
    a, b, c = tok.convert_tokens_to_ids(["a", "b", "c"])
    prompts = ["1+1=", "hi", "a much longer prompt"]
    engine = make_engine(tiny_model)
    engine.llm.replies = [
        [([a, b, eos], [-0.1, -0.2, -0.3], "stop"), ([a, a, a, a], [-1.0, -1.1, -1.2, -1.3], "length")],
        [([c, close], [-0.5, -0.6], "stop"), ([b, b, b, b], [-2.0, -2.1, -2.2, -2.3], "length")],
        [([eos], [-0.7], "stop"), ([c, a], [-0.8, -0.9], "stop")],
    ]
    r = engine.generate(tok, prompts, num_generations=2, max_new_tokens=4, temperature=0.7, top_p=0.9,
                        stop_strings=("</answer>",), max_prompt_length=6, seed=11)

    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left")
    assert torch.equal(r.prompt_ids, enc["input_ids"][:, -6:]) and torch.equal(r.prompt_mask, enc["attention_mask"][:, -6:])
    assert r.prompt_ids[0, 0] == pad and r.prompt_truncated == 1
    assert torch.equal(r.completion_ids, torch.tensor([[a, b, eos, pad], [a, a, a, a], [c, close, pad, pad],
                                                       [b, b, b, b], [eos, pad, pad, pad], [c, a, pad, pad]]))
    assert torch.equal(r.completion_mask, torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0],
                                                        [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 0]]))
    assert torch.equal(r.logprobs, torch.tensor([[-0.1, -0.2, -0.3, 0], [-1.0, -1.1, -1.2, -1.3], [-0.5, -0.6, 0, 0],
                                                 [-2.0, -2.1, -2.2, -2.3], [-0.7, 0, 0, 0], [-0.8, -0.9, 0, 0]]))
    assert r.truncated.tolist() == [False, True, False, True, False, False]
    assert r.completions == ["ab", "aaaa", "c</answer>", "bbbb", "", "ca"]
    assert r.num_generations == 2 and r.lengths.tolist() == [3, 4, 2, 4, 1, 2]

    _, requests, params = engine.llm.events[-1]
    assert [q["prompt_token_ids"] for q in requests] == [tok(p)["input_ids"][-6:] for p in prompts]
    for i, p in enumerate(params):
        assert vars(p) == dict(n=2, temperature=0.7, top_p=0.9, max_tokens=4, stop=["</answer>"],
                               include_stop_str_in_output=True, ignore_eos=False, logprobs=0, seed=11 + 2 * i)


def test_ignore_eos_drops_stop_strings_and_seed_none_is_passed_on(tiny_model, tok):
    engine = make_engine(tiny_model)
    engine.llm.replies = [[([7, 8], [-1.0, -1.0], "length")]]
    r = engine.generate(tok, ["hi"], num_generations=1, max_new_tokens=2, stop_strings=("</answer>",),
                        ignore_eos=True)
    (p,) = engine.llm.events[-1][2]
    assert p.stop is None and p.ignore_eos is True and p.seed is None
    assert r.truncated.tolist() == [True]


def test_engine_kwargs(tiny_model, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    kw = make_engine(tiny_model, dtype="float16", gpu_memory_utilization=0.4, seed=3).llm.kwargs
    assert kw == dict(model=tiny_model, dtype="float16", gpu_memory_utilization=0.4, max_model_len=64, seed=3,
                      enable_sleep_mode=False, logprobs_mode="processed_logprobs")
    monkeypatch.setenv("WORLD_SIZE", "2")  # under a multi-process launch: one engine per process, as TRL
    assert make_engine(tiny_model).llm.kwargs["distributed_executor_backend"] == "external_launcher"


# --- (2) weight sync bookkeeping


def test_sync_sends_every_weight_once_and_skips_unchanged_versions(tiny_model):
    policy = load_model(tiny_model)
    assert policy.lm_head.weight.data_ptr() == policy.model.embed_tokens.weight.data_ptr()  # tied
    engine = make_engine(tiny_model, dtype="bfloat16")
    engine.sync_bucket_bytes = 1 << 14  # several load_weights calls
    events = engine.llm.events

    def check_sent(sent):
        sd = policy.state_dict()
        names = [n for n, _ in sent]
        assert len(names) == len(set(names)) and set(names) == set(sd) - {"lm_head.weight"}
        for name, t in sent:
            assert t.dtype == torch.bfloat16 and t.device == sd[name].device
            assert torch.equal(t, sd[name].to(torch.bfloat16)), name

    assert engine.sync_weights(policy, policy_version=0) == len(policy.state_dict()) - 1
    # one load call per sync (vLLM's layerwise reload needs every weight of a layer in the same call),
    # fed bucket by bucket: several buckets, each of one dtype, so each can travel as one flat tensor
    assert sum(e[0] == "load" for e in events) == 1 and events[-1] == ("reset",)
    buckets = list(weight_buckets(policy, torch.bfloat16, engine.sync_bucket_bytes))
    assert len(buckets) > 1 and all(len({t.dtype for _, t in b}) == 1 for b in buckets)
    assert [n for b in buckets for n, _ in b] == [n for n, _ in loads(events)]
    assert [e[0] for e in events].count("reset") == 1
    check_sent(loads(events))
    assert engine.version == 1 and engine.policy_version == 0

    n_events = len(events)
    assert engine.sync_weights(policy, policy_version=0) == 0  # unchanged: nothing sent, cache kept
    assert len(events) == n_events and engine.version == 1

    with torch.no_grad():  # an update
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    assert engine.sync_weights(policy, policy_version=1) == len(policy.state_dict()) - 1
    check_sent(loads(events[n_events:]))
    assert events[-1] == ("reset",) and engine.version == 2

    n_events = len(events)
    engine.sync_weights(policy)  # no version: always sent
    engine.sync_weights(policy)
    assert engine.version == 4 and len(loads(events[n_events:])) == 2 * (len(policy.state_dict()) - 1)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])  # bf16: the merged fp32 temporaries are freed
def test_lora_weights_are_sent_merged_and_the_base_is_untouched(tiny_model, dtype):
    torch.manual_seed(0)
    policy = add_lora(load_model(tiny_model), r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # peft starts B at zero, which would make the merge a no-op
    base_before = {k: v.clone() for k, v in policy.get_base_model().state_dict().items()}
    merged = copy.deepcopy(policy).merge_and_unload().state_dict()

    engine = make_engine(tiny_model, dtype=dtype)
    engine.sync_weights(policy, policy_version=0)
    sent = dict(loads(engine.llm.events))
    assert set(sent) == set(merged) - {"lm_head.weight"} and len(sent) == len(loads(engine.llm.events))
    for name, t in sent.items():
        assert t.dtype == getattr(torch, dtype)
        torch.testing.assert_close(t, merged[name].to(t.dtype), rtol=0, atol=1e-6)
    q = "model.layers.0.self_attn.q_proj.weight"
    base_q = base_before["model.layers.0.self_attn.q_proj.base_layer.weight"]
    assert (sent[q].float() - base_q).abs().max() > 1e-2  # the delta is really in what was sent
    for k, v in policy.get_base_model().state_dict().items():
        assert torch.equal(v, base_before[k]), k  # bitwise: nothing merged in place and unmerged


# --- sleep mode, in-process guard, (4) missing vLLM


def test_sleep_mode_wakes_before_loading_and_resends_after_sleeping(tiny_model, tok):
    policy = load_model(tiny_model)
    engine = make_engine(tiny_model, enable_sleep_mode=True)
    events = engine.llm.events
    assert events == [("sleep", 2)]
    with pytest.raises(RuntimeError, match="sync_weights"):
        engine.generate(tok, ["hi"], num_generations=1, max_new_tokens=1)
    n = engine.sync_weights(policy, policy_version=0)
    assert events[1] == ("wake_up", ("weights",)) and events[2][0] == "load" and events[-1] == ("reset",)
    engine.llm.replies = [[([7], [-1.0], "length")]]
    engine.generate(tok, ["hi"], num_generations=1, max_new_tokens=1)
    assert [e[0] for e in events[-3:]] == ["wake_up", "generate", "sleep"] and events[-3][1] == ("kv_cache",)
    # level 2 dropped the weights: the same version is sent again
    assert engine.sync_weights(policy, policy_version=0) == n
    assert engine.sync_weights(policy, policy_version=0) == 0


def test_an_engine_core_in_another_process_is_refused(tiny_model):
    engine = make_engine(tiny_model)
    engine.llm.llm_engine = SimpleNamespace()  # what multiprocess mode exposes: no model_executor
    with pytest.raises(RuntimeError, match="VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        engine.sync_weights(load_model(tiny_model))


def test_missing_vllm_says_how_to_install_it(tiny_model, tok, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError, installed or not
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)  # restored after the test
    with pytest.raises(ImportError) as err:
        VLLMEngine(tiny_model, max_model_len=64)
    assert str(err.value) == INSTALL_HINT
    assert "pip install 'r1kit[vllm]'" in INSTALL_HINT and "setup.sh --vllm" in INSTALL_HINT
    engine = VLLMEngine(tiny_model, max_model_len=64, llm_factory=FakeLLM)  # SamplingParams still needs vLLM
    with pytest.raises(ImportError, match="pip install 'r1kit\\[vllm\\]'"):
        engine.generate(tok, ["hi"], num_generations=1, max_new_tokens=1)


# --- server mode without a server (no vLLM needed)


def test_an_unreachable_server_is_one_line_and_a_clean_exit(tiny_model, tmp_path):
    import socket

    from tests.conftest import REPO, run_cli

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("grpo", "--model", tiny_model, "--dataset", str(REPO / "configs/data/add1_train.jsonl"), "--max_steps", "2", "--output_dir",
                str(tmp_path / "run"), "--rollout_engine", "vllm", "--vllm_mode", "server", "--vllm_server_port",
                str(port), "--vllm_server_timeout", "2")
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"r1kit: error: vLLM server http://127.0.0.1:{port} did not answer /health (Connection refused); "
                      "start it with `r1kit vllm-serve --model MODEL --port PORT` (vllm_server_host / "
                      "vllm_server_port, waited vllm_server_timeout=2 s)"], r.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoint-2").exists()


def test_the_server_client_refuses_a_prompt_longer_than_the_servers_limit(tok):
    from r1kit.core.errors import ConfigError
    from r1kit.rollout.vllm_client import VLLMClient

    client = VLLMClient.__new__(VLLMClient)  # no server: the check comes before any request
    client.max_model_len, client.base_url = 16, "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"longer than the vLLM server's max_model_len=16: lower max_prompt_length .*"
                                          r"restart `r1kit vllm-serve` with a larger --max_model_len"):
        client.generate(tok, ["a prompt longer than sixteen characters"], num_generations=2, max_new_tokens=8)
