"""Mock upstreams: demo and test infrastructure, not providers.

They speak the real wire formats (OpenAI's in `openai_upstream`, Anthropic's in
`anthropic_upstream`), play fault scripts (`faults`), and write deterministic content (`content`)
and streams (`stream`). The `mock` provider type serves `openai_upstream` in process; `keystead
mock-upstream` and `keystead mock-anthropic` serve them on a port.
"""
