"""A vLLM engine behind HTTP, for training with `vllm_mode="server"` (another process or machine).

    python -m agents.vllm_server --model Qwen/Qwen3-VL-2B-Thinking --port 8000
    axpo train --use-vllm --vllm-mode server --vllm-server-base-url http://HOST:8000 ...

Like TRL's `trl vllm-serve`, this is its own small server around an in-process `vllm.LLM`, not
vLLM's OpenAI server: training needs token-id prompts with images, the logprobs of the sampled
distribution, and a weight update after every optimizer step, which that server does not take.
Endpoints: GET /health (the model and its settings), POST /generate (`agents.vllm_engine`'s
wire format), POST /update_weights (a safetensors blob). Requests run one at a time; vLLM
batches inside each.

The server loads whatever weights it is sent: bind it to 127.0.0.1 (the default) or a network
only the trainer reaches.
"""

import argparse
import threading
from typing import Any

from agents.vllm_engine import EngineError, EngineSettings, LocalEngine


def make_app(engine: LocalEngine) -> Any:
    # No `from __future__ import annotations` in this module: FastAPI reads the endpoints'
    # annotations at runtime, and a string "Request" would make it a query parameter.
    from fastapi import FastAPI, HTTPException, Request

    app = FastAPI(title="axpo vLLM server")
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict[str, Any]:
        return engine.info()

    @app.post("/generate")
    def generate(body: dict[str, Any]) -> dict[str, Any]:
        try:
            requests, sampling = list(body["requests"]), dict(body["sampling"])
            for r in requests:
                if not isinstance(r.get("ids"), list) or not r["ids"]:
                    raise ValueError("each request needs a non-empty list of ids")
        except (KeyError, TypeError, ValueError) as e:
            raise HTTPException(422, f"bad request: {type(e).__name__}: {e}") from None
        with lock:
            try:
                return {"results": engine.generate(requests, sampling)}
            except (KeyError, TypeError, ValueError) as e:
                raise HTTPException(422, f"{type(e).__name__}: {e}") from None
            except EngineError as e:
                raise HTTPException(500, str(e)) from None

    @app.post("/update_weights")
    async def update_weights(request: Request) -> dict[str, Any]:
        from safetensors.torch import load

        blob = await request.body()
        try:
            weights = load(blob)
        except Exception as e:
            raise HTTPException(422, f"not a safetensors blob: {e}") from None
        with lock:
            try:
                engine.update_weights(weights.items())
            except EngineError as e:
                raise HTTPException(500, str(e)) from None
        return {"loaded": len(weights)}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agents.vllm_server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or hub name ('tiny': "
                        "the embedded tiny Qwen3-VL)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on a GPU, else float32")
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import uvicorn

    from agents import tiny
    from agents.loading import is_tiny

    path = tiny.cached("vl") if is_tiny(args.model) else args.model
    settings = EngineSettings(dtype=args.dtype, max_model_len=args.max_model_len,
                              gpu_memory_utilization=args.gpu_memory_utilization,
                              seed=args.seed)
    engine = LocalEngine(path, settings)
    uvicorn.run(make_app(engine), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
