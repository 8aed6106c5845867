"""The 7B path on one GPU in one prepared run: each part measured, or reported "skipped: reason" / "failed: ...".

    vla-parl bench gpu --json gpu.json --markdown gpu.md          # on a CUDA machine: OpenVLA-7B, random bf16
    vla-parl bench gpu --cpu-dry-run                              # every part on the tiny model, on CPU

`scripts/gpu_check.sh` wraps it for the device machine. The parts (the 7B architecture, random weights, sdpa):

  greedy    greedy latency and actions/s at batch 1 and 16 (`bench inference`)
  decode    prefill vs per-token decode time at batch 1 and 32, against the H200 weight-read floor
            (bf16 weights / 4.8 TB/s ≈ 3 ms per token)
  sample    N = 32 prefix-shared candidates vs one greedy action and vs 32 independent generations; the
            critic's top-k + 10 local steps as % of sampling (`bench sample`, official PA-RL critic)
  distill   one LoRA (r 32) distillation step at batch 16 (forward, backward, AdamW): time and peak memory
            with gradient checkpointing on and off
  qlora     the LLM quantised to 4-bit NF4 (bitsandbytes) + LoRA r 32 + one step at batch 16: peak memory
  serving   refined actions (N = 32, top-10, 10 steps) through the real server (`vla-parl serve --critic`):
            p50 / p99 latency and req/s with 8 concurrent clients
  flash     greedy with flash_attention_2 (skipped where flash-attn has no wheel)
  compiled  greedy (batch 1) and N = 32 sampling with `OpenVLA.compile_language_model()` (torch.compile of the
            decode path) vs eager, the compile time, and whether greedy tokens stay equal

Targets checked in the table: greedy ≤ 50 ms at batch 1; N = 32 refined (sampling + critic steps) ≤ 1.5×
one greedy action. With `--cpu-dry-run` the 7B is replaced by the tiny model and sizes shrink; what needs
CUDA (4-bit quantisation, flash attention) is skipped with its reason, so a typo cannot survive to the GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable

__all__ = ["add_arguments", "run", "format_table", "to_markdown", "PARTS", "H200_BANDWIDTH_TBPS"]

PARTS = ("greedy", "decode", "sample", "distill", "qlora", "serving", "flash", "compiled")
H200_BANDWIDTH_TBPS = 4.8
TARGET_GREEDY_S = 0.050
TARGET_REFINED_VS_GREEDY = 1.5
_REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpu-dry-run", action="store_true",
                        help="run every part on the tiny model on CPU with small sizes (the 7B parts are skipped)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=None, help="run just these parts")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default: 5 GPU, 1 dry run)")
    parser.add_argument("--serving-seconds", type=float, default=None, help="load duration of the serving part")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="skip the parts that would start after this many seconds (gpu_check.sh: 420)")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the result as JSON here")
    parser.add_argument("--markdown", default=None, help="also write the Markdown table here")


class _Setup:
    """Model, sizes and device of this run: the 7B on CUDA, or the tiny model on CPU (--cpu-dry-run)."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        if args.repeats is not None and args.repeats < 1:
            from vla_parl.errors import ConfigError

            raise ConfigError(f"--repeats must be >= 1, got {args.repeats}")
        self.dry = bool(args.cpu_dry_run)
        self.cuda = torch.cuda.is_available() and not self.dry
        if not self.dry and not self.cuda:
            from vla_parl.errors import VLAParlError

            raise VLAParlError("vla-parl bench gpu needs a CUDA GPU; on a CPU machine run it with --cpu-dry-run")
        self.repeats = args.repeats or (1 if self.dry else 5)
        self.model_args = (["--model", "tiny", "--image-size", "56", "--device", "cpu", "--threads", "1"] if self.dry
                           else ["--model", "7b", "--device", "cuda", "--dtype", "bf16"])
        self.model_args += ["--repeats", str(self.repeats)]
        self.batch = 2 if self.dry else 16
        self.serving_seconds = args.serving_seconds or (2.0 if self.dry else 20.0)

    def build_model(self, attn: str = "sdpa"):
        """A fresh model of this run on its device (train-ready; eval mode)."""
        import torch

        from vla_parl.models import openvla_7b, openvla_tiny

        if self.dry:
            torch.set_num_threads(1)
            return openvla_tiny(image_size=56, attn_implementation=attn)
        with torch.device("cuda"):
            model = openvla_7b(attn_implementation=attn)
        return model.to(dtype=torch.bfloat16).eval()

    @property
    def device(self):
        import torch

        return torch.device("cuda" if self.cuda else "cpu")


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- parts -------------------------------------------------------------------------------------------------
def _greedy(setup: _Setup) -> dict[str, Any]:
    from vla_parl.bench.suite import _run_module

    sizes = ["1", "2"] if setup.dry else ["1", "16"]
    return _run_module("vla_parl.bench.inference", [*setup.model_args, "--batch-sizes", *sizes])


def _decode(setup: _Setup) -> dict[str, Any]:
    """Prefill time and per-token decode time (7 tokens) at batch 1 and 32, and the weight-read floor."""
    import torch

    from vla_parl.bench.models import sample_images
    from vla_parl.bench.timing import time_call

    model = setup.build_model()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.language_model.parameters())
    rows = []
    for batch in (1, 32):
        pixel_values, prompts = model.prepare_inputs(sample_images(1), ["pick up the red block"])
        pixel_values = pixel_values.to(setup.device)

        def generate(tokens: int) -> None:
            with torch.inference_mode():
                state = model.prefill(pixel_values, prompts).repeat_interleave(batch)
                for _ in range(tokens):
                    state = model.decode_step(state, state.last_logits.argmax(-1))

        prefill = time_call(lambda: generate(0), setup.device, repeats=setup.repeats)["median_s"]
        full = time_call(lambda: generate(7), setup.device, repeats=setup.repeats)["median_s"]
        rows.append({"batch_size": batch, "prefill_s": prefill, "per_token_s": max(full - prefill, 0.0) / 7})
    del model
    floor = weight_bytes / (H200_BANDWIDTH_TBPS * 1e12)
    return {"llm_weight_bytes": weight_bytes, "h200_floor_per_token_s": floor, "rows": rows,
            "per_token_vs_floor_b32": rows[-1]["per_token_s"] / floor}


def _sample(setup: _Setup) -> dict[str, Any]:
    from vla_parl.bench.suite import _run_module

    steps = "2" if setup.dry else "10"
    return _run_module("vla_parl.bench.sample", [*setup.model_args, "--num-samples", "32", "--refine-steps", steps,
                                                 "--top-k", "10"])


def _lora_step(model: Any, setup: _Setup, checkpointing: bool) -> dict[str, Any]:
    """Time and peak memory of one supervised LoRA step (token cross-entropy, AdamW) at `setup.batch`."""
    import torch

    from vla_parl.bench.models import sample_images
    from vla_parl.bench.timing import peak_memory_mb, reset_peak_memory, time_call

    low = model.config.action_vocab_end - model.config.n_action_bins
    tokens = torch.randint(low, model.config.action_vocab_end, (setup.batch, 7), generator=torch.Generator().manual_seed(0))
    batch = model.processor.training_batch(sample_images(setup.batch, size=224), ["pick up the red block"] * setup.batch,
                                           tokens).to(setup.device, dtype=model.dtype)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    (model.enable_gradient_checkpointing if checkpointing else model.disable_gradient_checkpointing)()
    model.train()

    def step() -> None:
        out = model(batch.input_ids, batch.pixel_values, batch.attention_mask, batch.labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    reset_peak_memory(setup.device)
    seconds = time_call(step, setup.device, warmup=1, repeats=setup.repeats)["median_s"]
    return {"gradient_checkpointing": checkpointing, "step_s": seconds, "samples_per_s": setup.batch / seconds,
            "peak_memory_mb": peak_memory_mb(setup.device)}


def _distill(setup: _Setup) -> dict[str, Any]:
    from vla_parl.models.openvla.lora import LoraSettings, apply_lora

    model = apply_lora(setup.build_model(), LoraSettings(r=32, alpha=16))
    rows = [_lora_step(model, setup, checkpointing) for checkpointing in (True, False)]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    del model
    return {"batch_size": setup.batch, "lora_rank": 32, "trainable_params": trainable, "rows": rows,
            "checkpointing_time_ratio": rows[0]["step_s"] / rows[1]["step_s"]}


def _qlora(setup: _Setup) -> dict[str, Any]:
    """Load (build + quantise the LLM to NF4) and one LoRA step, gradient checkpointing on: the memory the
    quantised weights hold, and the step's time and peak memory."""
    import torch

    from vla_parl.models.openvla.lora import LoraSettings, apply_lora

    started = time.perf_counter()
    model = setup.build_model()
    note = None
    if setup.cuda:
        from vla_parl.models.openvla.quantization import quantize_language_model

        quantize_language_model(model, bits=4)
    else:
        note = "skipped: 4-bit quantisation needs CUDA + bitsandbytes; the LoRA step ran unquantised"
    load_s = time.perf_counter() - started
    _free_memory()
    resident = (torch.cuda.memory_allocated() if setup.cuda else
                sum(p.numel() * p.element_size() for p in model.parameters())) / 2**20
    apply_lora(model, LoraSettings(r=32, alpha=16, include_vision=False))   # as configs/sft_bridge_7b_qlora.yaml
    step = _lora_step(model, setup, checkpointing=True)
    del model
    return {"quantized": setup.cuda, "note": note, "load_s": load_s, "weights_memory_mb": resident,
            "step": step, "batch_size": setup.batch}


def _serving(setup: _Setup) -> dict[str, Any]:
    """Refined actions through `vla-parl serve --critic` with 8 concurrent clients (scripts/bench_serving.py)."""
    import base64
    import importlib.util
    import io
    import tempfile

    import numpy as np
    from PIL import Image

    from vla_parl.critic import critic_resnet18

    spec = importlib.util.spec_from_file_location("bench_serving", _REPO_ROOT / "scripts" / "bench_serving.py")
    bench_serving = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_serving)
    with tempfile.TemporaryDirectory() as tmp:
        model = setup.build_model()
        save_started = time.perf_counter()
        model.save_pretrained(Path(tmp) / "model")
        save_s = time.perf_counter() - save_started
        del model
        _free_memory()
        critic = (critic_resnet18(action_dim=7, image_size=64, hidden_dims=(256, 256), num_q_heads=2) if setup.dry
                  else critic_resnet18(action_dim=7))
        critic.save(Path(tmp) / "critic")
        extra = ("--critic", str(Path(tmp) / "critic"), "--device", "cuda" if setup.cuda else "cpu")
        server, url = bench_serving._start_server(str(Path(tmp) / "model"), 16, 5.0, 1 if setup.dry else 8, extra,
                                                   start_timeout=120 if setup.dry else 600)
        try:
            png = io.BytesIO()
            Image.fromarray(np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(png, "PNG")
            body = json.dumps({"image": base64.b64encode(png.getvalue()).decode(), "unnorm_key": "default",
                               "instruction": "pick up the red block", "mode": "refined", "num_samples": 32,
                               "top_k": 10, "steps": 2 if setup.dry else 10}).encode()
            bench_serving._load(url, body, 8, min(setup.serving_seconds, 5.0), path="/v1/act")   # warm-up
            row = bench_serving._load(url, body, 8, setup.serving_seconds, path="/v1/act")
        finally:
            server.stop()
    if row["requests"] == 0 or row["errors"]:
        raise RuntimeError(f"refined serving: {row['requests']} answered, {row['errors']} errors")
    return {"checkpoint_save_s": save_s, **row}


def _compiled(setup: _Setup) -> dict[str, Any]:
    """Greedy at batch 1 and N = 32 prefix-shared sampling, eager vs `compile_language_model()` (torch.compile of
    the decode path), the compile time, and whether greedy tokens stay equal. Dry run: the eager backend (dynamo
    tracing without inductor's code generation, which takes minutes on CPU)."""
    import torch

    from vla_parl.bench.models import sample_images
    from vla_parl.bench.timing import time_call
    from vla_parl.policy.openvla import OpenVLAPolicy

    model = setup.build_model()
    policy = OpenVLAPolicy(model, action_dim=7)
    pixel_values, prompts = model.prepare_inputs(sample_images(1), ["pick up the red block"])
    pixel_values = pixel_values.to(setup.device)

    def measure() -> dict[str, Any]:
        greedy = lambda: model.generate_action_tokens(pixel_values, prompts, 7)  # noqa: E731
        sample = lambda: policy.sample_tokens(pixel_values, prompts, 32,  # noqa: E731
                                              generator=torch.Generator(device=setup.device).manual_seed(0))
        started = time.perf_counter()
        tokens = greedy()
        sample()
        first_s = time.perf_counter() - started
        return {"first_calls_s": first_s, "tokens": tokens.cpu(),
                "greedy_s": time_call(greedy, setup.device, repeats=setup.repeats)["median_s"],
                "sample_n32_s": time_call(sample, setup.device, repeats=setup.repeats)["median_s"]}

    eager = measure()
    backend = "eager" if setup.dry else "inductor"
    model.compile_language_model(backend=backend)
    compiled = measure()
    equal = bool(torch.equal(eager.pop("tokens"), compiled.pop("tokens")))
    del model, policy
    torch._dynamo.reset()
    return {"backend": backend, "eager": eager, "compiled": compiled, "greedy_tokens_equal": equal,
            "greedy_speedup": eager["greedy_s"] / compiled["greedy_s"],
            "sample_n32_speedup": eager["sample_n32_s"] / compiled["sample_n32_s"]}


def _flash(setup: _Setup) -> dict[str, Any]:
    import importlib.util

    if not setup.cuda:
        return {"skipped": "flash_attention_2 needs CUDA"}
    if importlib.util.find_spec("flash_attn") is None:
        return {"skipped": "flash-attn is not installed (no wheel for this torch/CUDA; it needs a source build)"}
    from vla_parl.bench.suite import _run_module

    return _run_module("vla_parl.bench.inference", [*setup.model_args, "--attn", "flash_attention_2",
                                                    "--batch-sizes", "1", "16"])


_PART_FUNCTIONS: dict[str, Callable[[_Setup], dict[str, Any]]] = {
    "greedy": _greedy, "decode": _decode, "sample": _sample, "distill": _distill, "qlora": _qlora,
    "serving": _serving, "flash": _flash, "compiled": _compiled}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the parts in order; after each, the JSON and Markdown files (when asked for) hold everything so far,
    so a run stopped from outside still leaves its figures. Parts that would start after `--budget-s` seconds
    are skipped with that reason."""
    import platform

    import torch

    setup = _Setup(args)
    machine = torch.cuda.get_device_name(0) if setup.cuda else f"CPU ({platform.processor() or platform.machine()})"
    result: dict[str, Any] = {
        "benchmark": "gpu", "dry_run": setup.dry, "model": "tiny (56 px)" if setup.dry else "openvla-7b (random bf16)",
        "machine": machine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
        "status": {}, "seconds": {}, "results": {}, "rows": []}
    status, seconds, results = result["status"], result["seconds"], result["results"]
    run_started = time.perf_counter()
    for name in args.only or PARTS:
        started = time.perf_counter()
        if args.budget_s is not None and started - run_started > args.budget_s:
            status[name] = f"skipped: the time budget of {args.budget_s:g} s was spent before this part"
            continue
        try:
            results[name] = _PART_FUNCTIONS[name](setup)
            skipped = results[name].get("skipped")
            status[name] = f"skipped: {skipped}" if skipped else results[name].get("note") or "ok"
        except Exception as exc:  # one broken part must not hide the others
            status[name] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
        finally:
            seconds[name] = time.perf_counter() - started
            _free_memory()
        result["rows"] = _rows(result)
        _write(result, args)
    result["rows"] = _rows(result)
    _write(result, args)
    return result


def _write(result: dict[str, Any], args: argparse.Namespace) -> None:
    from vla_parl.utils.files import atomic_write_text

    if args.json_path:
        atomic_write_text(args.json_path, json.dumps(result, indent=2, default=str) + "\n")
    if args.markdown:
        atomic_write_text(args.markdown, to_markdown(result))


# ---- report ------------------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f} ms" if seconds >= 1e-4 else f"{1e6 * seconds:.2f} µs"


def _rows(result: dict[str, Any]) -> list[dict[str, str]]:
    """figure / value / target / met rows of the parts that ran; failed or skipped parts get one row each."""
    res, status, rows = result["results"], result["status"], []

    def add(part: str, figure: str, value: str, target: str = "", met: bool | None = None) -> None:
        shown = "" if met is None else "n/a (dry run)" if result["dry_run"] else "yes" if met else "no"
        rows.append({"part": part, "figure": figure, "value": value, "target": target, "met": shown})

    for part in res:
        if "skipped" in res[part]:
            continue
        try:
            _part_rows(part, res[part], add)
        except (KeyError, IndexError, StopIteration, TypeError, ZeroDivisionError) as exc:
            add(part, "—", f"result lacks its figures ({type(exc).__name__}: {exc})")
    for part, state in status.items():
        if state != "ok" and not (part in res and "skipped" not in res[part]):
            add(part, "—", state)
    return rows


def _part_rows(part: str, r: dict[str, Any], add: Callable[..., None]) -> None:
    """The table rows of one part's result `r`."""
    if part in ("greedy", "flash"):
        for row in r["rows"]:
            target = f"≤ {_ms(TARGET_GREEDY_S)}" if row["batch_size"] == 1 and part == "greedy" else ""
            add(part, f"greedy latency, batch {row['batch_size']} ({r['attn']})",
                f"{_ms(row['latency_s'])} (model {_ms(row['model_only_latency_s'])}); "
                f"{row['actions_per_s']:.1f} actions/s", target,
                row["latency_s"] <= TARGET_GREEDY_S if target else None)
    elif part == "decode":
        for row in r["rows"]:
            add(part, f"prefill + per-token decode, batch {row['batch_size']}",
                f"{_ms(row['prefill_s'])} + {_ms(row['per_token_s'])}/token",
                f"floor {_ms(r['h200_floor_per_token_s'])}/token (H200 weight read)")
    elif part == "sample":
        n32 = next(x for x in r["rows"] if x["num_samples"] == 32)
        refine = r["refine_s_n32"][r["refine_critic"]]
        refined_ratio = (n32["shared_s"] + refine) / r["greedy_s"]
        r["refined_n32_vs_greedy"] = refined_ratio
        add(part, "N = 32 prefix-shared vs one greedy action", f"{r['ratio_n32_vs_greedy']:.2f}×")
        add(part, "N = 32 prefix-shared vs 32 independent generations",
            f"{r['speedup_n32_vs_naive']:.1f}× faster" if r.get("speedup_n32_vs_naive") else "—")
        add(part, f"critic top-{r['top_k']} + {r['refine_steps']} local steps ({r['refine_critic']})",
            f"{100 * r['refine_overhead_n32']:.0f}% of sampling")
        add(part, "N = 32 refined (sampling + critic steps) vs one greedy action", f"{refined_ratio:.2f}×",
            f"≤ {TARGET_REFINED_VS_GREEDY}×", refined_ratio <= TARGET_REFINED_VS_GREEDY)
    elif part == "distill":
        for row in r["rows"]:
            add(part, f"LoRA r {r['lora_rank']} step, batch {r['batch_size']}, checkpointing "
                      f"{'on' if row['gradient_checkpointing'] else 'off'}",
                f"{_ms(row['step_s'])}; peak {row['peak_memory_mb'] / 1024:.1f} GiB")
    elif part == "qlora":
        add(part, f"4-bit QLoRA load + LoRA step, batch {r['batch_size']}" + ("" if r["quantized"] else
                                                                              " (unquantised: CPU)"),
            f"load {r['load_s']:.1f} s, weights {r['weights_memory_mb'] / 1024:.2f} GiB; step "
            f"{_ms(r['step']['step_s'])}, peak {r['step']['peak_memory_mb'] / 1024:.1f} GiB")
    elif part == "compiled":
        e, c = r["eager"], r["compiled"]
        add(part, f"torch.compile ({r['backend']}) greedy, batch 1",
            f"{_ms(c['greedy_s'])} vs eager {_ms(e['greedy_s'])} ({r['greedy_speedup']:.2f}×); tokens "
            f"{'equal' if r['greedy_tokens_equal'] else 'differ'}; compile {c['first_calls_s']:.0f} s")
        add(part, f"torch.compile ({r['backend']}) N = 32 prefix-shared sampling",
            f"{_ms(c['sample_n32_s'])} vs eager {_ms(e['sample_n32_s'])} ({r['sample_n32_speedup']:.2f}×)")
    elif part == "serving":
        add(part, "refined serving (N = 32), 8 concurrent clients",
            f"p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, {r['rps']:.1f} req/s "
            f"(mean batch {r['mean_batch']:.1f})")


def to_markdown(result: dict[str, Any]) -> str:
    """The Markdown table that goes into docs/performance.md."""
    head = (f"{result['model']} on {result['machine']}, torch {result['torch']}, {result['date']}"
            + (" — CPU dry run (figures only prove the script runs)" if result["dry_run"] else ""))
    lines = [head, "", "| part | figure | value | target | met |", "|---|---|---|---|---|"]
    lines += [f"| {r['part']} | {r['figure']} | {r['value']} | {r['target']} | {r['met']} |" for r in result["rows"]]
    took = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    return "\n".join(lines + ["", f"Time per part: {took}."]) + "\n"


def format_table(result: dict[str, Any]):
    from rich.table import Table

    table = Table(title=f"vla-parl bench gpu — {result['model']} on {result['machine']}"
                        + (" (CPU dry run)" if result["dry_run"] else ""))
    for col in ("part", "figure", "value", "target", "met"):
        table.add_column(col)
    for row in result["rows"]:
        table.add_row(row["part"], row["figure"], row["value"], row["target"], row["met"])
    table.caption = "; ".join(f"{k}: {v}" for k, v in result["status"].items() if v != "ok") or "all parts ok"
    return table
