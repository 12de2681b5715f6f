"""Mock upstreams: demo and test infrastructure, not providers.

They speak the real wire formats (OpenAI's in `openai_upstream`, with its Responses API in
`responses`; Anthropic's in `anthropic_upstream`), play fault scripts (`faults`), and write
deterministic content (`content`, `structured` for tool calls and JSON-schema instances) and
streams (`stream`). The `mock` provider type serves `openai_upstream` in process (with `mock:
{flavor: anthropic}`, `anthropic_upstream`); `keystead mock-upstream` and `keystead
mock-anthropic` serve them on a port.
"""
