# ventral: build the engine library, the tools in bin/ and the tests.
#
#   make                 CPU build (OpenBLAS + OpenMP), tools and tests in bin/
#   make test            build and run ./bin/tests
#   make check           the layering rule (tools/check_layering.py), make test, the gradient checks
#                        again under other BLAS kernels and thread counts, and the CUDA build
#                        (warnings as errors) where nvcc exists
#   make sanitize        build and run the tests under ASan + UBSan (in build-san/)
#   make fuzz            build the libFuzzer targets (clang) and run each for FUZZ_SECONDS
#   make CUDA=1          also build the CUDA backend (kernels/cuda, nvcc)
#   make CUDNN=1         CUDA=1 plus the cuDNN convolution path (picked at run time: VT_CONV=cudnn)
#   make MPI=1           data-parallel pretraining over MPI (OpenMPI's mpicxx; NCCL too with CUDA=1):
#                        mpirun -np K ./bin/pretrain DIR ...
#   make NO_OMP=1        no OpenMP;  CUDA_ARCH="80 90" to pick GPU archs (default 90);  DEBUG=1 for -O0 -g
#
# The Makefile probes for its dependencies and says what it found. They come from Debian
# packages installed by third_party/install-deps.sh.

CXX      ?= g++
BUILD    ?= build
BIN      ?= bin
OPT      ?= -O3 -march=native -g
# -fno-trapping-math -fno-math-errno: let loops over exp-based activations vectorise
# (ventral never reads FP exception flags or errno from math functions).
CXXFLAGS += $(OPT) -std=c++17 -Wall -Wextra -Wno-unused-parameter -fno-trapping-math -fno-math-errno -I. -MMD -MP
LDFLAGS  += $(EXTRA_LDFLAGS)
LDLIBS   += -lz -lm -lpthread

ifeq ($(DEBUG),1)
  OPT := -O0 -g
endif
ifeq ($(WERROR),1)  # warnings fail the build (make check's CUDA build)
  CXXFLAGS += -Werror
  NVCC_WERROR := -Werror all-warnings -Xcompiler -Werror
endif

# ---- probes ---------------------------------------------------------------------------
# OpenBLAS: the OpenMP build (libopenblas-openmp-dev) shares one thread pool with our OpenMP
# loops; the pthread build's threads and OpenMP's spinning threads fight over the cores
# (measured: up to 10x slower small convolutions on 2 cores).
OPENBLAS_OMP_DIR := $(wildcard /usr/lib/$(shell gcc -print-multiarch 2>/dev/null)/openblas-openmp)
ifneq ($(NO_OMP),1)
  ifneq ($(OPENBLAS_OMP_DIR),)
    OPENBLAS_CFLAGS := -I$(subst /lib/,/include/,$(OPENBLAS_OMP_DIR))
    OPENBLAS_LIBS   := -L$(OPENBLAS_OMP_DIR) -lopenblas -Wl,-rpath,$(OPENBLAS_OMP_DIR)
    OPENBLAS_KIND   := OpenMP build
  endif
endif
ifeq ($(OPENBLAS_LIBS),)
  OPENBLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
  OPENBLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null)
  OPENBLAS_KIND   := pthread build; install libopenblas-openmp-dev for better threading
endif
ifeq ($(OPENBLAS_LIBS),)
  ifneq ($(wildcard /usr/include/x86_64-linux-gnu/cblas.h /usr/include/cblas.h),)
    OPENBLAS_LIBS := -lopenblas
  else
    $(error OpenBLAS not found: run third_party/install-deps.sh (installs libopenblas-openmp-dev))
  endif
endif
$(info ventral: found OpenBLAS ($(OPENBLAS_KIND)))
CXXFLAGS += $(OPENBLAS_CFLAGS)
LDLIBS   += $(OPENBLAS_LIBS)

ifeq ($(wildcard /usr/include/stb/stb_image.h),)
  $(error stb_image not found: run third_party/install-deps.sh (installs libstb-dev))
endif
$(info ventral: found stb_image (libstb))
LDLIBS += -lstb

ifeq ($(wildcard /usr/include/nlohmann/json.hpp),)
  $(error nlohmann/json not found: run third_party/install-deps.sh (installs nlohmann-json3-dev))
endif
$(info ventral: found nlohmann/json (header only))

ifeq ($(NO_OMP),1)
  $(info ventral: OpenMP disabled (NO_OMP=1))
  CXXFLAGS += -Wno-unknown-pragmas
else
  OMP_OK := $(shell echo 'int main(){}' | $(CXX) -fopenmp -x c++ - -o /dev/null 2>/dev/null && echo yes)
  ifeq ($(OMP_OK),yes)
    $(info ventral: found OpenMP)
    CXXFLAGS += -fopenmp
    LDFLAGS  += -fopenmp
  else
    $(info ventral: OpenMP not found, building single-threaded kernels)
  endif
endif

NVCC ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(CUDNN),1)
  CUDA := 1
endif
ifeq ($(CUDA),1)
  ifeq ($(NVCC),)
    $(error CUDA=1 but nvcc was not found (expected /usr/local/cuda/bin/nvcc))
  endif
  $(info ventral: building the CUDA backend with $(NVCC))
  CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
  # Machine code for each listed arch (90, sm_90 or 90a), plus PTX of the last for newer GPUs.
  CUDA_ARCH  ?= 90
  CUDA_SMS   := $(patsubst sm_%,%,$(patsubst compute_%,%,$(CUDA_ARCH)))
  NVCC_ARCH  := $(foreach a,$(CUDA_SMS),-gencode arch=compute_$(a),code=sm_$(a)) \
                -gencode arch=compute_$(lastword $(CUDA_SMS)),code=compute_$(lastword $(CUDA_SMS))
  NVCCFLAGS  ?= -O3
  NVCCFLAGS  += -std=c++17 -I. -DVT_CUDA $(NVCC_ARCH) -Xcompiler -Wall,-Wextra,-Wno-unused-parameter $(NVCC_WERROR)
  CXXFLAGS   += -DVT_CUDA -I$(CUDA_HOME)/include
  LDLIBS     += -L$(CUDA_HOME)/lib64 -lcudart -lcublas -Wl,-rpath,$(CUDA_HOME)/lib64
  ifeq ($(CUDNN),1)
    ifeq ($(wildcard $(CUDA_HOME)/include/cudnn.h /usr/include/cudnn.h /usr/include/$(shell gcc -print-multiarch 2>/dev/null)/cudnn.h),)
      $(error CUDNN=1 but cudnn.h was not found (looked in $(CUDA_HOME)/include and /usr/include))
    endif
    $(info ventral: with the cuDNN convolution path (VT_CONV=cudnn at run time))
    NVCCFLAGS += -DVT_CUDNN
    CXXFLAGS  += -DVT_CUDNN
    LDLIBS    += -lcudnn
  endif
else ifneq ($(NVCC),)
  $(info ventral: nvcc found at $(NVCC); CPU build (use `make CUDA=1` for the CUDA backend))
else
  $(info ventral: nvcc not found, skipping CUDA)
endif

# MPI: opt-in, so that the default binaries need no MPI library where they run (the GPU
# machines' bundles carry none); engine/dist.cpp is the only source that uses it.
MPICXX ?= $(shell command -v mpicxx 2>/dev/null)
ifeq ($(MPI),1)
  ifeq ($(MPICXX),)
    $(error MPI=1 but mpicxx was not found: run third_party/install-deps.sh (installs libopenmpi-dev))
  endif
  $(info ventral: MPI build with $(MPICXX): mpirun -np K ./bin/pretrain)
  CXXFLAGS += -DVT_MPI -DOMPI_SKIP_MPICXX -DMPICH_SKIP_MPICXX $(shell $(MPICXX) --showme:compile)  # C bindings only
  LDLIBS   += $(filter-out -lmpi_cxx,$(shell $(MPICXX) --showme:link))
  ifeq ($(CUDA),1)
    ifneq ($(wildcard $(CUDA_HOME)/include/nccl.h),)
      $(info ventral: NCCL found: GPU ranks average their gradients on the device)
      CXXFLAGS += -DVT_NCCL
      LDLIBS   += -lnccl
    endif
  endif
else ifneq ($(MPICXX),)
  $(info ventral: mpicxx found at $(MPICXX); single-process build (`make MPI=1` for mpirun -np K ./bin/pretrain))
endif

# ---- sources --------------------------------------------------------------------------
LIB_SRC   := $(wildcard kernels/*.cpp kernels/cpu/*.cpp engine/*.cpp engine/io/*.cpp models/*.cpp models/datasets/*.cpp models/fit/*.cpp)
TOOL_SRC  := $(wildcard tools/*.cpp)
TEST_SRC  := $(wildcard tests/*.cpp)
CUDA_SRC  := $(if $(filter 1,$(CUDA)),$(wildcard kernels/cuda/*.cu))

LIB_OBJ   := $(LIB_SRC:%.cpp=$(BUILD)/%.o) $(CUDA_SRC:%.cu=$(BUILD)/%.cu.o)
TOOLS     := $(TOOL_SRC:tools/%.cpp=$(BIN)/%)
TEST_OBJ  := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
LIB       := $(BUILD)/libventral.a

.PHONY: all test check layering sanitize fuzz clean FORCE
all: $(TOOLS) $(BIN)/tests

# Objects depend on the flags they were built with (CUDA=1 vs CUDNN=1 vs WERROR=1 in one
# build folder): the stamp is rewritten only when the flags change, so a change rebuilds.
FLAGS_STAMP := $(BUILD)/flags.stamp
$(FLAGS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(CXX) $(CXXFLAGS) $(NVCC) $(NVCCFLAGS)' | cmp -s - $@ || echo '$(CXX) $(CXXFLAGS) $(NVCC) $(NVCCFLAGS)' > $@
FORCE:

$(BUILD)/%.o: %.cpp Makefile $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# Tests find their fixtures (tests/fixtures/) and ../shared/data from the source root.
$(BUILD)/tests/%.o: tests/%.cpp Makefile $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -DVT_ROOT='"$(CURDIR)"' -c $< -o $@

$(BUILD)/%.cu.o: %.cu Makefile $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -MF $(@:.o=.d) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/tools/%.o $(LIB)
	@mkdir -p $(BIN)
	$(CXX) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BIN)/tests: $(TEST_OBJ) $(LIB)
	@mkdir -p $(BIN)
	$(CXX) $(LDFLAGS) $(TEST_OBJ) $(LIB) $(LDLIBS) -o $@

test: $(BIN)/tests
	./$(BIN)/tests

# What CI runs: the CPU build and every test; then, where nvcc exists, the CUDA backend
# (with cuDNN where its header exists) built with warnings as errors, and its tests, which
# skip cleanly without a GPU.
CUDNN_FOUND := $(wildcard /usr/local/cuda/include/cudnn.h /usr/include/cudnn.h /usr/include/$(shell gcc -print-multiarch 2>/dev/null)/cudnn.h)
# The gradient checks also run under other OpenBLAS kernel families (those this CPU can run)
# and 1 and 2 threads: float32 round-off differs between them, and a check must hold on all.
GRAD_TESTS := -tc='*gradient*,gradcheck:*'
BLAS_CORES := Prescott $(if $(shell grep -m1 -ow avx2 /proc/cpuinfo 2>/dev/null),Haswell) \
              $(if $(shell grep -m1 -ow avx512bw /proc/cpuinfo 2>/dev/null),SkylakeX)
# The implicit GEMM's AVX2 kernel (kernels/cpu/igemm.cpp), which a build for an AVX-512 CPU
# never compiles: on such a CPU the convolution tests run again in a build for Haswell (AVX2+FMA).
AVX512 := $(shell grep -m1 -ow avx512f /proc/cpuinfo 2>/dev/null)
AVX2_TESTS := ops: conv2d*,models: whole-model gradient check with every*
# The layering rule first (README, ## Layout: nothing includes upward); it reads the sources only.
layering:
	python3 tools/check_layering.py
check: layering
	$(MAKE) all
	./$(BIN)/tests
	@for core in $(BLAS_CORES); do for th in 1 2; do \
	  echo "check: gradient checks with OPENBLAS_CORETYPE=$$core, $$th thread(s)"; \
	  OPENBLAS_CORETYPE=$$core OMP_NUM_THREADS=$$th ./$(BIN)/tests $(GRAD_TESTS) -m || exit 1; done; done
ifneq ($(AVX512),)
	$(MAKE) BUILD=build-avx2 BIN=build-avx2/bin OPT="-O2 -march=haswell -g" build-avx2/bin/tests
	./build-avx2/bin/tests -tc='$(AVX2_TESTS)'
endif
ifneq ($(MPICXX),)
	$(MAKE) MPI=1 WERROR=1 BUILD=build-mpi BIN=build-mpi/bin build-mpi/bin/pretrain build-mpi/bin/tests
	./build-mpi/bin/tests -tc='mpi:*'
endif
ifneq ($(NVCC),)
	$(MAKE) CUDA=1 $(if $(CUDNN_FOUND),CUDNN=1) $(if $(MPICXX),MPI=1) WERROR=1 BUILD=build-cuda BIN=build-cuda/bin build-cuda/bin/tests
	./build-cuda/bin/tests -tc='cuda:*'
endif

# ASan + UBSan: a separate build tree, so the fast build stays as it is. OpenBLAS 0.3.21 falls
# back to its Prescott kernels on CPUs newer than it knows, and under ASan that fallback's
# threaded dsymv crashed inside OpenBLAS (a wild read, test_dynamics' PLS fits; 2026-12-05, at
# older commits too; the same tests pass under ASan with the Haswell or SkylakeX kernels and
# without ASan on Prescott), so where the CPU has AVX2 and OPENBLAS_CORETYPE is unset the
# sanitizer run takes the Haswell kernels. `make check` tests the kernel families themselves.
# The build is for this CPU (-march=native), so the vector kernels it runs (Winograd, the
# implicit GEMM's AVX-512 or AVX2 micro-kernel) are the ones the tests check.
SAN_BLAS := $(if $(OPENBLAS_CORETYPE),,$(if $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo y),OPENBLAS_CORETYPE=Haswell))
sanitize:
	$(MAKE) BUILD=build-san BIN=build-san/bin \
	  OPT="-O1 -g -march=native -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" NO_OMP=1 build-san/bin/tests
	$(SAN_BLAS) ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build-san/bin/tests

# libFuzzer targets (clang): fuzz/<name>.cpp -> build-fuzz/<name>. Seeds in fuzz/corpus/<name>
# (read only); what the fuzzer finds goes to build-fuzz/corpus-<name>.
FUZZ_SECONDS ?= 60
FUZZ_SRC := $(wildcard fuzz/*.cpp)
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.cpp=build-fuzz/%)
FUZZ_LIB_SRC := kernels/error.cpp engine/common.cpp engine/io/npy.cpp engine/io/image.cpp models/datasets/npz_stream.cpp
build-fuzz/%: fuzz/%.cpp $(FUZZ_LIB_SRC)
	@mkdir -p build-fuzz
	clang++ -std=c++17 -O1 -g -I. $(OPENBLAS_CFLAGS) -fsanitize=fuzzer,address,undefined $< $(FUZZ_LIB_SRC) -lz -lstb -o $@
fuzz: $(FUZZ_BIN)
	@for t in $(FUZZ_BIN); do n=$$(basename $$t); mkdir -p build-fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  $$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -artifact_prefix=build-fuzz/ \
	    build-fuzz/corpus-$$n fuzz/corpus/$$n || exit 1; done

clean:
	rm -rf $(BUILD) $(BIN) build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(TOOL_SRC:tools/%.cpp=$(BUILD)/tools/%.d)
