# pneumo-edge for Jetson Xavier NX / Orin NX on JetPack 5.1.x (L4T r35, TensorRT 8.5.2, CUDA 11.4, Python 3.8).
#
#   docker build -f jetson.Dockerfile -t pneumo-edge:jp5 .          (on the Jetson, or arm64 buildx)
#   docker run --runtime nvidia --network host -v /var/lib/pneumo-edge:/var/lib/pneumo-edge \
#              -v /etc/pneumo-edge:/etc/pneumo-edge:ro pneumo-edge:jp5
#
# Engines are NOT built into the image: they are bound to the exact GPU, TensorRT
# version and flags, so the entrypoint builds missing/stale ones on first boot
# into /var/lib/pneumo-edge/engines (a volume) and reuses them afterwards.
# The base's L4T major (r35) must match the host's JetPack 5.x (check /etc/nv_tegra_release).

ARG L4T_TRT_DEVEL=nvcr.io/nvidia/l4t-tensorrt:r8.5.2.2-devel
ARG L4T_TRT_RUNTIME=nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime

# --- pycuda needs CUDA headers and nvcc to build: compile the wheel in the devel image ---
FROM ${L4T_TRT_DEVEL} AS pycuda
RUN apt-get update && apt-get install -y --no-install-recommends python3-dev python3-pip build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV CUDA_ROOT=/usr/local/cuda PATH=/usr/local/cuda/bin:${PATH}
RUN python3 -m pip install --no-cache-dir "pip<24.1" wheel "numpy==1.24.4" \
    && python3 -m pip wheel --no-cache-dir --no-deps -w /wheels "pycuda==2022.2.2"

# --- runtime image ---
FROM ${L4T_TRT_RUNTIME}
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends \
        python3 python3-pip python3-libnvinfer libgl1 libglib2.0-0 ca-certificates libopenjp2-7 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=pycuda /wheels /wheels
# Versions that exist for Python 3.8 on aarch64 (pydicom 3 needs 3.10; numpy 1.24 is the last for 3.8;
# onnxruntime 1.19 is the last for 3.8 and gives build_engine its FP32 parity reference).
RUN python3 -m pip install --no-cache-dir "pip<24.1" \
    && python3 -m pip install --no-cache-dir /wheels/pycuda-*.whl \
        "numpy==1.24.4" "opencv-python-headless==4.8.1.78" "pydicom==2.4.4" "pylibjpeg==1.4.0" \
        "pylibjpeg-openjpeg==2.0.0" "pylibjpeg-libjpeg==2.0.0" "paho-mqtt==2.1.0" "PyYAML==6.0.1" \
        "onnx==1.14.1" "onnxruntime==1.16.3" "glymur==0.13.6" "pynetdicom==2.0.2" \
    && rm -rf /wheels

RUN groupadd --system pneumo-edge && useradd --system --gid pneumo-edge --groups video \
        --home-dir /var/lib/pneumo-edge --shell /usr/sbin/nologin pneumo-edge
WORKDIR /app
COPY pyproject.toml README.md ./
COPY edge ./edge
COPY build_engine ./build_engine
COPY models ./models
COPY config ./config
COPY deploy/entrypoint.sh /usr/local/bin/pneumo-edge-entrypoint
RUN python3 -m pip install --no-cache-dir --no-deps . \
    && python3 -c "import tensorrt, pycuda.driver, edge, build_engine; print('tensorrt', tensorrt.__version__)" \
    && mkdir -p /var/lib/pneumo-edge/engines /var/lib/pneumo-edge/capture /var/lib/pneumo-edge/state \
    && chown -R pneumo-edge:pneumo-edge /var/lib/pneumo-edge && chmod 0755 /usr/local/bin/pneumo-edge-entrypoint

USER pneumo-edge
ENV PNEUMO_EDGE_CONFIG=/etc/pneumo-edge/config.yaml
VOLUME ["/var/lib/pneumo-edge"]
ENTRYPOINT ["/usr/local/bin/pneumo-edge-entrypoint"]
CMD ["run"]
