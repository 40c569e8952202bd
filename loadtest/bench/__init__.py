"""`python -m loadtest bench`: the benchmarks (docs/bench.md).

- `suite`: `main(argv)`, the run's order, the table, the targets
- `floor`: the raw floors (trio-websocket, nats-py), helper processes
- `path`: reference-client processes driving real gateways (visitors, agents, idle pairs)
- `micro`: micro-benchmarks of the sans-I/O cores
- `procs`: child processes and what is measured of them (RSS, CPU, run-queue wait, counters)
- `results`: pure helpers: percentiles, formatting, table rows, the JSON writer
- `browser`: our snippet vs rrweb in one Chromium page (`rrweb/` pins rrweb's npm packages)
- `nats_clients`: the gateway's native NATS client vs nats-py under trio-asyncio (run alone)
"""
