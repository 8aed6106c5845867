"""Requests → validated `ActItem`s: the checks every act route shares (instruction, unnorm key, vectors, options).

`/v1` bodies are validated against the pydantic schema and their images decoded off the event loop
(`serving.decoding`); each row then becomes an `ActItem` with its options resolved (the refined defaults
come from the critic's improvement operator, then the server's flags). Anything wrong raises
`PayloadError` (→ a 4xx JSON answer) naming the field and what it should be.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from serving.config import ServerConfig
from serving.decoding import BodyDecoder, RequestInvalid
from serving.engine import ActItem, ActResult, PolicyEngine
from serving.images import PayloadError, decode_image
from serving.schemas import MAX_INSTRUCTION_CHARS, MAX_VECTOR_DIM, ActRequest, ActResponse, Timing

__all__ = ["RequestParser", "parse_vector", "act_response"]

Outcome = tuple[ActResult, float, float, int]     # (result, queued s, inference s, batch size) from the batcher


def parse_vector(value: Any, name: str) -> np.ndarray | None:
    """An optional proprio/state vector (a list, or a json_numpy array on /act) → finite float32 [D]."""
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"'{name}' must be a flat list of numbers ({exc})") from exc
    if array.ndim != 1 or not 1 <= array.size <= MAX_VECTOR_DIM or not np.all(np.isfinite(array)):
        raise PayloadError(f"'{name}' must be a flat list of 1..{MAX_VECTOR_DIM} finite numbers, got shape "
                           f"{list(array.shape)}")
    return array


class RequestParser:
    """Validates act requests against the served engine and the server's limits."""

    def __init__(self, engine: PolicyEngine, config: ServerConfig, decoder: BodyDecoder) -> None:
        self.engine = engine
        self.config = config
        self.decoder = decoder

    @staticmethod
    def instruction(value: Any) -> str:
        if not isinstance(value, str):
            raise PayloadError(f"'instruction' must be a string, got {type(value).__name__}")
        if not value.strip() or len(value) > MAX_INSTRUCTION_CHARS:
            raise PayloadError(f"'instruction' must be non-blank and at most {MAX_INSTRUCTION_CHARS} characters "
                               f"(got {len(value)})")
        return value

    def unnorm_key(self, key: Any) -> str:
        """The dataset key to use (`UnnormKeyError` → 422 listing the model's keys)."""
        if key is not None and not isinstance(key, str):
            raise PayloadError(f"'unnorm_key' must be a string or absent, got {type(key).__name__}")
        return self.engine.resolve_unnorm_key(key)

    async def requests(self, body: bytes, batch: bool) -> list[ActRequest]:
        """A `/v1/act` (batch: `/v1/act/batch`) body → its validated rows, images decoded (off the event loop)."""
        from fastapi.exceptions import RequestValidationError

        config = self.config
        try:
            req = await self.decoder(body, batch, config.max_image_pixels, config.max_batch_items)
        except RequestInvalid as exc:
            raise RequestValidationError(exc.errors) from None
        return list(req.requests) if batch else [req]

    def item(self, req: ActRequest, where: str = "image") -> ActItem:
        """One validated row → the `ActItem` the engine runs, its options resolved."""
        config, engine = self.config, self.engine
        self.instruction(req.instruction)
        image = decode_image(req.image, config.max_image_pixels, where)
        key = self.unnorm_key(req.unnorm_key)
        given = {k: getattr(req, k) for k in ("num_samples", "top_k", "steps", "temperature", "seed")
                 if getattr(req, k) is not None}
        allowed = {"greedy": set(), "sample": {"num_samples", "temperature", "seed"},
                   "refined": {"num_samples", "top_k", "steps", "temperature", "seed"}}[req.mode]
        if set(given) - allowed:
            raise PayloadError(f"option(s) {sorted(set(given) - allowed)} do not apply to mode {req.mode!r} "
                               f"(it takes {sorted(allowed) or 'no options'})")
        proprio, state = parse_vector(req.proprio, "proprio"), parse_vector(req.state, "state")
        options = {"num_samples": given.get("num_samples", 1)}
        if req.mode == "refined":
            if problem := engine.refined_problem(key):
                raise PayloadError(problem)
            if problems := engine.vector_problems(proprio, state):
                raise PayloadError("mode 'refined' with this critic: " + "; ".join(problems))
            op = engine.improvement   # the critic's improvement operator settings: the refined defaults
            options = {"num_samples": given.get("num_samples", config.default_samples_refined or op.num_samples),
                       "top_k": given.get("top_k", config.default_top_k or op.top_k),
                       "steps": given.get("steps", op.num_steps if config.default_steps is None
                                          else config.default_steps)}
        if options["num_samples"] > config.max_num_samples:
            raise PayloadError(f"num_samples {options['num_samples']} exceeds this server's limit "
                               f"{config.max_num_samples}")
        return ActItem(image=image, instruction=req.instruction, unnorm_key=key, mode=req.mode,
                       temperature=given.get("temperature", config.default_temperature), proprio=proprio,
                       state=state, seed=given.get("seed"), **options)


def act_response(item: ActItem, outcome: Outcome, t0: float, step: int | None = None) -> ActResponse:
    """The `/v1` answer for one row (`step`: its index in the episode it was recorded in)."""
    result, queued, elapsed, size = outcome
    return ActResponse(
        action=result.action.tolist(), mode=item.mode, unnorm_key=item.unnorm_key, q=result.q,
        greedy_q=result.greedy_q, candidate_q=result.candidate_q,
        samples=result.samples.tolist() if result.samples is not None else None,
        policy_version=result.policy_version, step=step,
        timing=Timing(queue_ms=queued * 1e3, inference_ms=elapsed * 1e3,
                      total_ms=(time.perf_counter() - t0) * 1e3, batch_size=size))
