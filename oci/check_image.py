"""Checks that an OCI layout holds the filter in Istio's Wasm image format (compat variant).

    python3 check_image.py LAYOUT_DIR TAG WASM_FILE

Istio's image fetcher accepts an OCI image with exactly one layer of media type
`application/vnd.oci.image.layer.v1.tar+gzip` and takes `plugin.wasm` from it; the
`module.wasm.image/variant: compat` annotation names the variant.
"""

import gzip
import io
import json
import pathlib
import sys
import tarfile


def blob(layout, digest):
    algorithm, value = digest.split(":", 1)
    return (layout / "blobs" / algorithm / value).read_bytes()


def main(layout_dir, tag, wasm_file):
    layout = pathlib.Path(layout_dir)
    index = json.loads((layout / "index.json").read_text())
    entries = [
        m for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if len(entries) != 1:
        sys.exit(f"{layout}: expected one manifest tagged {tag}, found {len(entries)}")
    manifest = json.loads(blob(layout, entries[0]["digest"]))
    variant = manifest.get("annotations", {}).get("module.wasm.image/variant")
    if variant != "compat":
        sys.exit(f"manifest annotation module.wasm.image/variant is {variant!r}, not 'compat'")
    layers = manifest["layers"]
    if len(layers) != 1 or layers[0]["mediaType"] != "application/vnd.oci.image.layer.v1.tar+gzip":
        sys.exit(f"expected one tar+gzip layer, found {[l['mediaType'] for l in layers]}")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layers[0]["digest"])))) as tar:
        files = [member.name for member in tar.getmembers() if member.isfile()]
        if [name.lstrip("./") for name in files] != ["plugin.wasm"]:
            sys.exit(f"the layer must hold plugin.wasm only, it holds {files}")
        module = tar.extractfile(files[0]).read()
    if module != pathlib.Path(wasm_file).read_bytes():
        sys.exit(f"plugin.wasm in the image differs from {wasm_file}")
    print(f"ok: {layout}:{tag} is a compat Wasm image holding {wasm_file} ({len(module)} bytes)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
