"""Snakemake entry point: convert a downloaded checkpoint into the canonical source file."""

from pathlib import Path

from robust_transfer import checkpoints
from robust_transfer.joblog import to_log

to_log(snakemake)
spec = snakemake.config["sources"][snakemake.wildcards.source]
# The architecture and metadata come from the config, not params: a new param would rerun the
# conversion of every existing source, and with it every run that uses it. The URL (a param)
# decides the file, and the file its architecture: a wrong one fails the strict load, loudly.
arch = spec.get("arch") or "resnet50"
meta = {"url": snakemake.params.url, "sha256": snakemake.params.sha256}
meta.update({k: spec[k] for k in ("arch", "norm", "eps", "imagenet_top1") if spec.get(k) is not None})
payload = checkpoints.convert(Path(snakemake.input.raw), Path(snakemake.output.weights), meta, arch=arch)
width = f", width_per_group {payload['width_per_group']}" if "width_per_group" in payload else ""
print(f"{arch}: {len(payload['state_dict'])} tensors{width}, {payload['num_classes']} classes")
