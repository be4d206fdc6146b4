# GPU image: TensorFlow's CUDA wheel, then this package installed the way README.md does.
FROM tensorflow/tensorflow:2.21.0-gpu
RUN apt-get update && (apt-get install -y --no-install-recommends dataset-fashion-mnist || true) \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/state_of_sparsity
COPY . .
# --no-build-isolation: the custom op compiles against the image's TensorFlow (pip's isolated build has none).
RUN pip install --no-cache-dir --no-build-isolation ".[test]"
CMD ["python", "-m", "state_of_sparsity.quickstart"]
