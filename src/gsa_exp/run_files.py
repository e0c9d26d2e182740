"""The names of the files a run or a sweep leaves behind, declared once.

Written by the training layer and the Hydra callbacks, read by the sweep summary and the
figures; this module imports nothing, so every layer (the leaf ``reporting`` package too)
may name the files without depending on the code that writes them.
"""

METRICS_FILE = "metrics.json"  # final validation and test metrics of the best checkpoint
STATUS_FILE = "status.json"  # completed | failed | interrupted (with the resume command)
ERROR_FILE = "error.txt"  # the traceback of a failed run
SWEEP_STATUS_FILE = "sweep_status.jsonl"  # one line per finished job, in the sweep directory
PROVENANCE_FILE = "provenance.json"  # code version, package versions, machine
PREDICTIONS_FILE = "predictions_{split}.csv"  # MedMNIST's evaluator layout: index, then one score per class
TARGETS_FILE = "targets_{split}.csv"  # index, then the label (multi-label: one 0/1 column per label)
MAP_NPY = "attention_map.npy"  # the run's attention map, float32 H x W
MAP_PNG = "attention_map.png"
SAMPLES_NPZ = "attention_samples.npz"  # the maps of a fixed sample of test images
OVERLAYS_PNG = "attention_overlays.png"  # those maps over their images
LR_FIND_JSON = "lr_find.json"  # tune.lr_find: the suggested learning rate and the search's losses
LR_FIND_PNG = "lr_find.png"  # its loss against learning rate, the suggestion marked
