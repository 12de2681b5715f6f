import httpx
import respx

from app.llm.clients import openai_client

RECORDED = {
    "request": {
        "method": "POST",
        "url": "https://api.openai.com/v1/chat/completions",
        "headers": {
            "Authorization": "Bearer sk-proj-1234",
            "OpenAI-Organization": "org-support",
            "X-Request-ID": "e5b38d2a-4d32-441e-8e45-214213141c93",
        },
    },
    "response": {"id": "chatcmpl-x65BwVugcdmzFIwafAfRKtW9CxhZT", "object": "chat.completion"},
}

XAI_HEADERS = {"Authorization": "Bearer xai-HAVZoLAafGFwXDGLWfGXm7pHMDqkrDdES4Rr4U9flEJs8pV27eA9Pf92T2r6iOdeGA6pdlqWRMbfBZFw", "Content-Type": "application/json"}
REDACTED_HEADERS = {"Authorization": "Bearer sk-proj-****************************Qx3k"}
TEMPLATE_HEADERS = {"Authorization": "Bearer {OPENAI_API_KEY}"}


@respx.mock
async def test_chat_route_forwards_headers(client: httpx.AsyncClient) -> None:
    route = respx.post(RECORDED["request"]["url"]).respond(200, json=RECORDED["response"])
    await openai_client().chat.completions.create(model="gpt-4o-mini", messages=[])
    assert route.called
