"""Checks Kubernetes manifests against the CRD schemas in a folder, as strictly as the API server.

    python check_manifests.py validate SCHEMA_DIR MANIFEST...   exit 1 and name every error
    python check_manifests.py json FILE...                      the YAML documents, as JSON

Each document is checked against the `openAPIV3Schema` of the CRD whose group, version and kind
match its `apiVersion` and `kind`. Like the API server with strict field validation (`kubectl
apply --validate=strict`), an object whose schema lists its properties accepts no others unless
the schema says `x-kubernetes-preserve-unknown-fields`, so a misspelt field is an error rather
than silently pruned. CEL rules (`x-kubernetes-validations`) are not evaluated.
"""

import json
import pathlib
import sys

import jsonschema
import yaml


# libyaml's loader: the CRD files are megabytes of YAML.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def documents(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.load_all(file, Loader=LOADER) if doc is not None]


def strict(schema):
    """A copy of `schema` in which objects with listed properties are closed."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in closed
        and "additionalProperties" not in closed
        and not closed.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        closed["additionalProperties"] = False
    return closed


def crd_schemas(schema_dir, wanted):
    """(apiVersion, kind) -> the root schema of that CRD version, for the keys in `wanted`."""
    found = {}
    for path in sorted(pathlib.Path(schema_dir).glob("*.yaml")):
        for doc in documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                root = dict(version["schema"]["openAPIV3Schema"])
                # The API server accepts these at the root whether or not the CRD lists them.
                root["properties"] = {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {"type": "object"},
                    **root.get("properties", {}),
                }
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                if key in wanted:
                    found[key] = strict(root)
    return found


def validate(schema_dir, paths):
    manifests = [(path, doc) for path in paths for doc in documents(path)]
    wanted = {(doc.get("apiVersion"), doc.get("kind")) for _, doc in manifests}
    schemas = crd_schemas(schema_dir, wanted)
    errors = 0
    for path, doc in manifests:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = (doc.get("metadata") or {}).get("name")
        where = f"{path}: {key[1]} {name}"
        if key not in schemas:
            print(f"{where}: no CRD schema for {key[0]} {key[1]}")
            errors += 1
            continue
        if not name:
            print(f"{where}: metadata.name is required")
            errors += 1
        validator = jsonschema.Draft4Validator(schemas[key])
        found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        for error in found:
            field = ".".join(str(p) for p in error.absolute_path) or "(root)"
            print(f"{where}: {field}: {error.message}")
        errors += len(found)
        if not found:
            print(f"ok {key[0]} {key[1]} {name} ({path})")
    return 1 if errors else 0


def main(argv):
    if len(argv) >= 3 and argv[0] == "validate":
        return validate(argv[1], argv[2:])
    if len(argv) >= 2 and argv[0] == "json":
        print(json.dumps([doc for path in argv[1:] for doc in documents(path)]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
