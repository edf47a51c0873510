"""The names of everything a run holds in the store, with the stage that writes each: the stages write and the
readers read through these names only, so that the two cannot drift apart. `Store` puts them under the run's key
(`KEY/array/NAME`, `KEY/json/NAME`, `KEY/bytes/NAME`)."""
from __future__ import annotations

import hashlib

STAGE_NAMES = ("dictionary", "pass1", "cluster", "embed", "graph", "patches")     # in the order they run
DICTIONARY, PASS1, CLUSTER, EMBED, GRAPH, PATCHES = STAGE_NAMES


def stages_of(units: str | None) -> tuple[str, ...]:
    """The stages of a run of these units (a run of neurons trains no dictionary)."""
    return STAGE_NAMES if units not in (None, "neurons") else STAGE_NAMES[1:]


# pass 1 (arrays; the neuron order is `neurons.neuron_ids`)
TOP_VALUES = "top_values"                   # (neurons, k) float32, descending
TOP_IMAGES = "top_images"                   # (neurons, k) run image ids
TOP_POSITIONS = "top_positions"             # (neurons, k) flat argmax position in the layer's map
CLASS_MATRIX = "class_matrix"               # (classes, neurons) Summit's A
CLASS_IMAGES = "class_images"               # (classes,) images counted
SKIPPED = "skipped"                         # run image ids that could not be read
CLASS_MEAN_MAXIMA = "class_mean_maxima"     # (classes, neurons) mean channel maximum
IMAGE_INDEX = "image_index"                 # (images,) data-set index of each run image
IMAGE_LABELS = "image_labels"               # (images,) class of each run image
MAXIMA_SAMPLE = "maxima_sample"             # (≤ 1,000, neurons) float32 maxima on an even sample of the images
PASS1_ARRAYS = (TOP_VALUES, TOP_IMAGES, TOP_POSITIONS, CLASS_MATRIX, CLASS_IMAGES, SKIPPED)
CLASS_NAMES = "class_names"                 # JSON
NEURON_IDS = "neuron_ids"                   # JSON

# cluster
CLUSTER_LABELS = "cluster_labels"           # (neurons,) at each layer's own cut, -1 for none
CLUSTER_TABLES = ("cluster_offsets", "cluster_members", "cluster_similarity", "cluster_image_offsets",
                  "cluster_images")         # `cluster.cluster_tables` of those labels
CLUSTER_OFFSETS, CLUSTER_MEMBERS, CLUSTER_SIMILARITY, CLUSTER_IMAGE_OFFSETS, CLUSTER_IMAGES = CLUSTER_TABLES
PAIRS, PAIR_JACCARD, PAIR_COACTIVATION = "pairs", "pair_jaccard", "pair_coactivation"
CLUSTER_MERGES, CLUSTER_CUTS, CLUSTER_CAPS = "cluster_merges", "cluster_cuts", "cluster_caps"

# embed
EMBEDDING, PROJECTION, NEIGHBORS, NEIGHBOR_SIMILARITY = "embedding", "projection", "neighbors", "neighbor_similarity"
EMBED_ARRAYS = (EMBEDDING, PROJECTION, NEIGHBORS, NEIGHBOR_SIMILARITY)

# patches
RECEPTIVE_FIELDS = "receptive_fields"       # JSON

# while a precompute runs
PROGRESS = "progress"                       # JSON, the running stage's record


def class_graph(label: int) -> str:
    """JSON: a class's graph at the run's own cut."""
    return f"graph/{label}"


def graph_neurons(label: int) -> str:
    """Array: the neurons a class's graph may show."""
    return f"graph_neurons/{label}"


def graph_weights(label: int) -> str:
    """Array: the neuron-level edge weights among them."""
    return f"graph_weights/{label}"


def neuron_patches(neuron: int) -> str:
    """Bytes: a neuron's patch PNGs, packed (`patch_images.pack`)."""
    return f"patches/{neuron}"


def explanation(image: str) -> str:
    """JSON and arrays under this prefix: one image's explanation (`store.explanations`); `image` is `run:INDEX`
    or `upload:SHA256`."""
    return "explain/" + hashlib.sha256(image.encode()).hexdigest()[:32]


def upload(digest: str) -> str:
    """Bytes: an uploaded image as received, by its SHA-256, so that its URL opens it again."""
    return f"upload/{digest}"


def dictionary(layer: str) -> str:
    """Arrays and JSON under this prefix: a layer's sparse dictionary and its quality (`store.dictionaries`)."""
    return f"dictionary/{layer}"


def stage_of_array(name: str) -> str:
    """The stage that writes the array `name`."""
    if name in EMBED_ARRAYS:
        return EMBED
    if name == CLUSTER_LABELS or name in CLUSTER_TABLES or name in (PAIRS, PAIR_JACCARD, PAIR_COACTIVATION,
                                                                    CLUSTER_MERGES, CLUSTER_CUTS, CLUSTER_CAPS):
        return CLUSTER
    return PASS1


def comparison(other: str, cut: str | float) -> str:
    """JSON and arrays under this prefix, kept under the first run's key: its comparison with run `other` at a cut
    (`store.comparisons`)."""
    return f"compare/{other}/{cut}"
