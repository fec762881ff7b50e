"""`default_config()` for `config.data`: every knob of the input pipeline, commented."""
import ml_collections


def default_config() -> ml_collections.ConfigDict:
    """Returns the `config.data` subtree with its defaults."""
    c = ml_collections.ConfigDict()
    # Where the images come from:
    #   "hf:NAME[:CONFIG]"  a Hugging Face dataset by name (datasets.load_dataset),
    #   "folder:PATH"       an image folder (PATH/train/<class>/*.jpg, PATH/validation/..., PATH/test/...,
    #                       or PATH/<class>/*.jpg with no split folders); a plain existing path works too;
    #                       PATH may be on object storage (s3://bucket/key, gs://...), copied once to
    #                       ~/.cache/vitjax/remote (a new copy when its objects change),
    #   "tfds:NAME"         a TensorFlow Datasets dataset (pip install vitjax[tfds]),
    #   "demo:digits"       scikit-learn's 8x8 digit scans (1,797 images, 10 classes), no network.
    c.source = "demo:digits"
    # Column names of Hugging Face datasets; None = found automatically ("image"/"img" or the only
    # Image feature; "label"/"labels" or the only ClassLabel feature).
    c.image_column = ml_collections.FieldReference(None, field_type=str)
    c.label_column = ml_collections.FieldReference(None, field_type=str)
    # Split names in the source; None = found automatically (train/training; validation/valid/val/dev;
    # test/testing). A missing validation or test split is carved out of train (see split_fractions);
    # "carve" carves it even when the source has one (e.g. an unlabelled test split).
    c.train_split = ml_collections.FieldReference(None, field_type=str)
    c.validation_split = ml_collections.FieldReference(None, field_type=str)
    c.test_split = ml_collections.FieldReference(None, field_type=str)
    # Fractions (train, validation, test) for carving missing splits out of train, renormalised over train
    # and the carved splits: none present -> 80/10/10 of train; only test present -> validation gets
    # 0.1 / (0.8 + 0.1) of train. Stratified by class.
    c.split_fractions = (0.8, 0.1, 0.1)
    # Seed of the stratified split; fixed so the split is the same on every run and on resume.
    c.split_seed = 0
    # Decoding worker processes (grain multiprocessing); 0 = decode in the training process.
    c.workers = 2
    # Batches buffered ahead of the training step (per worker when workers > 0).
    c.prefetch = 4
    # Threads reading/decoding inside each process (grain ReadOptions.num_threads).
    c.read_threads = 4
    # Decode cache: "none", "ram" (a shared memory file under /dev/shm, decoded once per run) or
    # "disk" (a file under cache_dir, reused across runs while the file list, labels and sizes are
    # unchanged; delete it after editing images in place).
    c.cache = "none"
    # A local folder (the caches are memory-mapped files).
    c.cache_dir = ml_collections.FieldReference(None, field_type=str)
    # Size of the cached training images (and of the host images when device_augment=True), as a
    # multiple of the model input size: images are resized (squashed) once to this square size and
    # random crops are taken from it. Evaluation images are cached exactly as Preprocessing makes them.
    c.cache_scale = 1.15
    # True: the host only resizes (once, cached) and ships uint8 at cache_scale * input size; random
    # resized crop + flip run on the device (vitjax.data.device_augment). False: all on the host.
    c.device_augment = False
    # Corrupt/unreadable image files: False = stop with an error naming the file (zero-byte and
    # non-image files in folders when scanned, others when decoded); True = decode every image once when
    # the source is opened and skip the bad ones (a warning lists every skipped file).
    c.skip_corrupt = False

    a = c.augment = ml_collections.ConfigDict()
    # Random resized crop to the model input size: area fraction and aspect-ratio ranges.
    # scale=(1.0, 1.0) and ratio=(1.0, 1.0) mean no crop (plain resize).
    a.crop_scale = (0.08, 1.0)
    a.crop_ratio = (3 / 4, 4 / 3)
    # Probability of a horizontal flip.
    a.hflip = 0.5
    # Policy of random photometric/geometric operations: "none", "randaugment" or "trivialaugment".
    a.policy = "none"
    # RandAugment: operations per image and magnitude (0..30; 9-10 is usual).
    a.randaugment_num_ops = 2
    a.randaugment_magnitude = 9
    # Colour jitter strength for brightness, contrast and saturation (0 = off; 0.4 is usual).
    a.color_jitter = 0.0
    # Random erasing probability (one rectangle of random noise per image; 0 = off).
    a.random_erasing = 0.0
    # Mixup / CutMix, applied on the device to a batch (vitjax.data.device_augment.mixup_cutmix):
    # Beta(alpha, alpha) mixing; 0 turns each off; with both on, one of them is chosen per batch.
    a.mixup_alpha = 0.0
    a.cutmix_alpha = 0.0
    # Probability that a batch is mixed at all.
    a.mixup_prob = 1.0
    return c
