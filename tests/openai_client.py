"""Drive the zhengwu server with the official `openai` Python package (a client we did not write).

Usage: python3 openai_client.py BASE_URL CHAT_MODEL EMBED_MODEL
Exits non-zero with a message on the first failed check.
"""
import math
import sys

from openai import OpenAI

base, chat_model, embed_model = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base + "/v1", api_key="not-needed", max_retries=0, timeout=600)

messages = [
    {"role": "system", "content": "你是政务服务助手，回答简洁准确。"},
    {"role": "user", "content": "中国的首都是哪里？请只回答城市名。"},
]

resp = client.chat.completions.create(model=chat_model, messages=messages, temperature=0, max_tokens=16)
text = resp.choices[0].message.content
assert "北京" in text, f"non-stream answer: {text!r}"
assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0, resp.usage
assert resp.choices[0].finish_reason in ("stop", "length"), resp.choices[0].finish_reason

stream = client.chat.completions.create(
    model=chat_model, messages=messages, temperature=0, max_tokens=16, stream=True,
    stream_options={"include_usage": True},
)
parts, usage = [], None
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        parts.append(chunk.choices[0].delta.content)
    if chunk.usage:
        usage = chunk.usage
streamed = "".join(parts)
assert streamed == text, f"stream {streamed!r} != non-stream {text!r}"
assert usage is not None and usage.completion_tokens == resp.usage.completion_tokens, usage

# The client asks for base64 by default and decodes it itself.
emb = client.embeddings.create(model=embed_model, input=["居住证怎么办理", "今天天气很好"])
assert len(emb.data) == 2
vec = emb.data[0].embedding
assert len(vec) == 384, len(vec)
norm = math.sqrt(sum(x * x for x in vec))
assert abs(norm - 1.0) < 1e-3, norm

models = [m.id for m in client.models.list().data]
assert chat_model in models and embed_model in models, models

try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    raise AssertionError("unknown model accepted")
except Exception as e:  # openai.NotFoundError
    assert getattr(e, "status_code", None) == 404, e

print("openai client OK:", text.strip())
