"""ml-notebooks: Jupyter notebooks with outputs, as Jupyter writes them (nbformat 4, indent 1)."""

from __future__ import annotations

import json
from typing import Any

from corpus_core import Corpus
from neg_helpers import png_b64, sha256

R = "ml-notebooks"


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def code(src: str, outputs: list[dict[str, Any]] | None = None, n: int | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": n, "metadata": {},
            "outputs": outputs or [], "source": _lines(src)}


def md(src: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": _lines(src)}


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"name": name, "output_type": "stream", "text": _lines(text)}


def result(text: str, n: int) -> dict[str, Any]:
    return {"data": {"text/plain": _lines(text)}, "execution_count": n, "metadata": {},
            "output_type": "execute_result"}


def image(b64: str) -> dict[str, Any]:
    return {"data": {"image/png": b64, "text/plain": ["<Figure size 640x480 with 1 Axes>"]},
            "metadata": {}, "output_type": "display_data"}


def notebook(cells: list[dict[str, Any]]) -> str:
    nb = {"cells": cells,
          "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"},
                       "language_info": {"name": "python", "version": "3.11.9"}},
          "nbformat": 4, "nbformat_minor": 5}
    for i, cell in enumerate(cells):
        cell["id"] = f"{i:08x}-cell"
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def build(c: Corpus) -> None:
    eval_rag(c)
    finetune(c)
    compare(c)
    requirements(c)


def eval_rag(c: Corpus) -> None:
    co = c.key("cohere", "notebook")
    mi = c.key("mistral", "notebook")
    oa = c.key("openai", "notebook")
    ls = c.key("langsmith", "notebook")
    az = c.key("azure-openai", "notebook")
    cells = [
        md("# RAG eval: rerankers\n\nCompare Cohere rerank against plain cosine on the support set."),
        code(f'import os\nos.environ["COHERE_API_KEY"] = "{co.m}"\n'
             f'os.environ["LANGCHAIN_API_KEY"] = "{ls.m}"\nos.environ["LANGCHAIN_TRACING_V2"] = "true"',
             n=1),
        code(f"%env MISTRAL_API_KEY={mi.m}",
             [stream(f"env: MISTRAL_API_KEY={c.copy(mi, 'notebook').m}")], n=2),
        code('from openai import OpenAI\n\nclient = OpenAI()\nclient.api_key', [result(f"'{oa.m}'", 3)],
             n=3),
        code('AZURE_KEY = "' + az.m + '"\nAZURE_ENDPOINT = "https://ml-sweden.openai.azure.com/"\n'
             'run_id = "' + c.neg(c.uuid(), "uuid", "a run id") + '"', n=4),
        code("scores = evaluate(retriever, rerank=True)\nscores.plot()",
             [stream("run " + c.neg(c.uuid(), "uuid", "LangSmith run id printed") + " finished\n"
                     "dataset hash " + c.neg(sha256(c), "hash", "dataset sha256") + "\n"),
              image(c.neg(png_b64(c, 32, 24), "base64-blob", "a matplotlib PNG output"))], n=5),
        code("print(os.environ['COHERE_API_KEY'][:4] + '...')",
             [stream(c.neg("Kx9d...", "redacted", "first four characters only") + "\n")], n=6),
    ]
    c.file(f"{R}/eval_rerankers.ipynb", notebook(cells))


def finetune(c: Corpus) -> None:
    hf = c.key("huggingface", "notebook")
    hf2 = c.key("huggingface", "notebook")
    rp = c.key("replicate", "notebook")
    tg = c.key("together", "notebook", "hex64")
    fw = c.key("fireworks", "notebook")
    cells = [
        md("## Fine-tune llama-3-8b on the ticket summaries"),
        code(f'from huggingface_hub import login\nlogin(token="{hf.m}")',
             [stream("Token is valid (permission: write).\n"
                     "Your token has been saved to /root/.cache/huggingface/token\nLogin successful\n",
                     "stderr")], n=1),
        code(f"!huggingface-cli upload acme/ticket-summaries ./out --token {hf2.m}",
             [stream("Uploading files: 100%|##########| 3/3\n"
                     "https://huggingface.co/acme/ticket-summaries/commit/"
                     + c.neg("9e1d0c2a6b8f4e3d1c0b9a8f7e6d5c4b3a2f1e0d", "hash", "a commit SHA in a URL")
                     + "\n")], n=2),
        code(f'import replicate\nrc = replicate.Client(api_token="{rp.m}")\n'
             'training = rc.trainings.create(version="meta/llama-3-8b:'
             + c.neg(c.hex(64), "hash", "a Replicate model version id (sha256)") + '", input=cfg)',
             [result("Training(id='" + c.neg(c.s("0123456789abcdefghijklmnopqrstuvwxyz", 26), "random-id",
                                              "a training id") + "', status='starting')", 3)], n=3),
        code(f'TOGETHER_API_KEY = "{tg.m}"\nFIREWORKS_API_KEY = "{fw.m}"\n'
             'HF_HUB_ENABLE_HF_TRANSFER = "1"', n=4),
        code("from transformers import set_seed\nset_seed(1234)\n"
             'WANDB_API_KEY = "' + c.neg("<paste-your-wandb-key>", "placeholder", "placeholder") + '"',
             n=5),
        code("trainer.train()", [stream("{'loss': 1.8734, 'grad_norm': 3.21, 'learning_rate': 0.0002}\n"
                                        "checkpoint sha: " + c.neg(sha256(c), "hash", "checkpoint hash") + "\n")],
             n=6),
    ]
    c.file(f"{R}/finetune_llama3.ipynb", notebook(cells))


def compare(c: Corpus) -> None:
    gg = c.key("google-ai", "notebook")
    xa = c.key("xai", "notebook")
    an = c.key("anthropic", "notebook")
    ds = c.key("deepseek", "notebook")
    gq = c.key("groq", "notebook")
    pp = c.key("perplexity", "notebook")
    cells = [
        md("# Gemini vs GPT vs Grok on the escalation prompts\n\nKeys come from the team vault; "
           "paste yours in the first cell, e.g. `GOOGLE_API_KEY = \""
           + c.neg("AIza...", "placeholder", "truncated example") + "\"`."),
        code(f'import google.generativeai as genai\ngenai.configure(api_key="{gg.m}")', n=1),
        code("from xai_sdk import Client\nxai = Client()\nxai",
             [result(f"Client(api_key='{xa.m}', base_url='https://api.x.ai/v1')", 2)], n=2),
        code("import anthropic\nclaude = anthropic.Anthropic()\nclaude.messages.create(model=MODEL, "
             "messages=msgs, max_tokens=512)",
             [{"ename": "AuthenticationError", "evalue": "Error code: 401",
               "output_type": "error",
               "traceback": ["AuthenticationError: Error code: 401 - {'type': 'error', 'error': "
                             "{'type': 'authentication_error', 'message': 'invalid x-api-key'}}",
                             "request headers: {'x-api-key': '" + an.m + "', "
                             "'anthropic-version': '2023-06-01'}"]}], n=3),
        code(f'DEEPSEEK = "{ds.m}"\nGROQ = "{gq.m}"\nPPLX = "{pp.m}"', n=4),
        code("from openai import OpenAI\nOpenAI().chat.completions.create(model='gpt-4o', messages=msgs)",
             [{"ename": "AuthenticationError", "evalue": "Error code: 401", "output_type": "error",
               "traceback": ["AuthenticationError: Error code: 401 - {'error': {'message': "
                             "'Incorrect API key provided: "
                             + c.neg("sk-proj-********************************************rT4w",
                                     "redacted", "OpenAI's own masked echo of a key") + ".'}}"]}], n=5),
        code("results.style.background_gradient()",
             [image(c.neg(png_b64(c, 24, 24), "base64-blob", "a PNG output"))], n=6),
    ]
    c.file(f"{R}/compare_models.ipynb", notebook(cells))


def requirements(c: Corpus) -> None:
    pkgs = [("openai", "1.35.3"), ("cohere", "5.5.8"), ("transformers", "4.42.3"),
            ("huggingface-hub", "0.23.4"), ("replicate", "0.26.1"), ("langsmith", "0.1.82")]
    lines = ["# generated by pip-compile --generate-hashes"]
    for name, version in pkgs:
        h1 = c.neg(sha256(c), "hash", "pip --hash")
        h2 = c.neg(sha256(c), "hash", "pip --hash")
        lines += [f"{name}=={version} \\", f"    --hash=sha256:{h1} \\", f"    --hash=sha256:{h2}"]
    c.file(f"{R}/requirements.txt", "\n".join(lines) + "\n")
