"""Routes: an alias names deployments; the router tries them with retries, a circuit breaker
per deployment and fallbacks (P15, P16, P19). docs/routing.md is the user's reference."""
