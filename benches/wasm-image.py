#!/usr/bin/env python3
"""Writes an OCI image layout whose one layer is a wasm component (`application/wasm`):
the image `ctr images import` takes for the shim's single-component way.

Usage: benches/wasm-image.py COMPONENT.wasm OUT_DIR (OUT_DIR must not exist)
"""
import hashlib, json, os, sys
wasm = open(sys.argv[1], "rb").read()
out = sys.argv[2]
os.makedirs(out + "/blobs/sha256")
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    open(f"{out}/blobs/sha256/{digest}", "wb").write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
config = json.dumps({"architecture": "wasm", "os": "wasip2"}).encode()
manifest = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(config)},
    "layers": [{"mediaType": "application/wasm", **blob(wasm)}],
}).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json", **blob(manifest),
    "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
open(out + "/index.json", "w").write(json.dumps(index))
open(out + "/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
