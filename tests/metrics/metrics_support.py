"""Scraping /metrics in tests: the text parsed by prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from support import AppClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample: (name, sorted labels) -> value. Raises if the text does not parse."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, metric: str, /, **labels: str) -> float:
    """The sum of `metric`'s samples whose labels include `labels`."""
    return sum(value for (sample, have), value in samples.items()
               if sample == metric and set(labels.items()) <= set(have))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def scrape(client: AppClient, token: str | None = None) -> Samples:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    reply = await client.request("GET", "/metrics", headers=headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return parse(reply.body.decode())
