"""Check CP-VTON on a CUDA GPU in one command: ``bash scripts/gpu_check.sh [OUT_DIR]``.

About 7 minutes on one H200 with 16 CPU cores; everything runs offline (TOM's perceptual loss uses a
randomly initialised VGG19). The parts run in this order, each in subprocesses with a timeout; a part
that fails is recorded and the next one runs anyway:

  tests        the CUDA tests: pytest GPU_CHECK_TEST_FILES -k GPU_CHECK_TEST_K
  data         a synthetic dataset (synthetic_data.py), used by every part below
  gmm_parity   GMM_STEPS GMM steps with train.py on the GPU (float32: train.py keeps TF32 off unless
               --tf32) and on the CPU, from the same seed
               and at the same time (on separate shares of the cores). Passes when both complete, the
               loss of the first TOL_STEPS steps agrees within REL_TOL, both losses fall (mean of the
               last TREND_WINDOW steps below the mean of the first) and end at the same level (those
               means within END_TOL of each other)
  gmm_tf32     the first TF32_STEPS GMM steps on the GPU with --tf32 (TF32 convolutions and matmuls),
               against the CPU curve: for information
  benchmark    benchmark.py at each batch of GPU_CHECK_BATCHES, in float32 and with
               GPU_CHECK_FAST_FLAGS: ms per GMM and TOM step, peak GPU memory; the float32 runs also
               time the data loader with GPU_CHECK_LOADER_WORKERS workers

Writes OUT_DIR/report.md, OUT_DIR/report.json (every number, both full loss curves) and
OUT_DIR/gpu_check.log (the output of every command), default OUT_DIR gpu_check/. The report is
rewritten after each part, so a check cut short still leaves one. Exit status: 0 when every part
passed (or when there is no GPU: it says so and checks nothing), 1 when a part failed or was
skipped by the time guard, 2 for missing Python packages or a bad setting.

Why only the first step must agree closely: its loss is the forward pass of the same weights on the same
batch, so float32 rounding alone separates GPU and CPU. Its gradients already differ more (they are sums
of many terms of both signs, and the feature L2-normalisation amplifies what reaches the extractors), and
Adam's first updates are about lr * sign(gradient), so every element whose gradient is near 0 can move by
2 * lr one way or the other. Two CPU runs that differ only in their thread count, 1 and 2, measured here
(seed 0, batch 4): step 1 equal to the 6 decimals train.py logs, step 2 3.4e-4 apart, step 3 7e-3, steps 4-5
4e-2; the GPU cannot be held closer than the CPU to itself.

Settings, from the environment [default]:
  GPU_CHECK_DEVICE          auto: the first CUDA GPU, or exit 0 without one; cpu: dry-run every part
                            on the CPU (the "GPU" run is a second CPU run) [auto]
  GPU_CHECK_BUDGET_S        time guard for the whole check: no part starts or runs past it [450]
  GPU_CHECK_GMM_STEPS       steps of the two GMM runs [300]
  GPU_CHECK_TF32_STEPS      steps of the TF32 run [10]
  GPU_CHECK_REL_TOL         |GPU - CPU| / CPU allowed on the first steps' losses [1e-4]
  GPU_CHECK_TOL_STEPS       how many first steps must agree [1]
  GPU_CHECK_END_TOL         |GPU - CPU| / CPU allowed on the mean loss of the last TREND_WINDOW steps [0.2]
  GPU_CHECK_TREND_WINDOW    steps averaged at each end of a curve (at most a third of it) [50]
  GPU_CHECK_TABLE_EVERY     the report's loss table has a row every this many steps [25]
  GPU_CHECK_BATCHES         benchmark batch sizes ["4 16"]
  GPU_CHECK_FAST_FLAGS      the benchmark's speed flags ["--amp --channels_last --compile"]
  GPU_CHECK_LOADER_WORKERS  data-loader worker counts timed ["4 8"]
  GPU_CHECK_BENCH_REPEATS   timed runs per benchmark measurement [5]
  GPU_CHECK_BENCH_WARMUP    untimed runs before them (the compilation happens here) [2]
  GPU_CHECK_N_TRAIN         pairs of the synthetic dataset [64]
  GPU_CHECK_TEST_FILES      test files searched for CUDA tests ["tests/test_networks.py tests/test_training.py"]
  GPU_CHECK_TEST_K          pytest -k expression that selects them ["cuda or gpu"]
  GPU_CHECK_WORK_DIR        data and checkpoints (about 1 GB) [a temporary folder, removed at the end]
  PYTHON                    the interpreter of every command [this one]
"""
import datetime
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent
REQUIRED_MODULES = ('torch', 'torchvision', 'tensorboardX', 'PIL', 'numpy', 'pytest')
RESERVE_S = 5          # of the budget, kept for writing the report
MIN_PART_S = 20        # a part with less time than this left is skipped, not started
PART_LIMITS_S = {'tests': 120, 'data': 90, 'gmm_parity': 300, 'gmm_tf32': 90, 'benchmark': 120,
                 'benchmark_fast': 180}
GPU_RUN_WORKERS = 4    # data-loader workers of the GPU training run
CPU_RUN_WORKERS = 2
LOSS_LINE = re.compile(r'^step:\s*(\d+), time: \S+, loss: ([^,\s]+)', re.MULTILINE)


# --------------------------------------------------------------------------- settings

def env_text(name, default):
    return os.environ.get(name, default).strip()


def parse_number(name, text, kind, minimum):
    try:
        value = kind(text)
    except ValueError:
        raise SystemExit(f'gpu_check: {name}: {text!r} is not a{"n" if kind is int else ""} {kind.__name__}') from None
    if value < minimum:
        raise SystemExit(f'gpu_check: {name}: {text!r} must be at least {minimum}')
    return value


def env_number(name, default, kind=int, minimum=1):
    return parse_number(name, env_text(name, str(default)), kind, minimum)


def env_ints(name, default):
    values = [parse_number(name, part, int, 1) for part in env_text(name, default).split()]
    if not values:
        raise SystemExit(f'gpu_check: {name} is empty; give numbers separated by spaces, e.g. {default!r}')
    return values


def read_settings():
    device = env_text('GPU_CHECK_DEVICE', 'auto')
    if device not in ('auto', 'cpu'):
        raise SystemExit(f'gpu_check: GPU_CHECK_DEVICE={device!r}: use auto or cpu')
    return {
        'device': device,
        'budget_s': env_number('GPU_CHECK_BUDGET_S', 450, float),
        'gmm_steps': env_number('GPU_CHECK_GMM_STEPS', 300),
        'tf32_steps': env_number('GPU_CHECK_TF32_STEPS', 10),
        'rel_tol': env_number('GPU_CHECK_REL_TOL', 1e-4, float, minimum=0),
        'tol_steps': env_number('GPU_CHECK_TOL_STEPS', 1),
        'end_tol': env_number('GPU_CHECK_END_TOL', 0.2, float, minimum=0),
        'trend_window': env_number('GPU_CHECK_TREND_WINDOW', 50),
        'table_every': env_number('GPU_CHECK_TABLE_EVERY', 25),
        'batches': env_ints('GPU_CHECK_BATCHES', '4 16'),
        'fast_flags': env_text('GPU_CHECK_FAST_FLAGS', '--amp --channels_last --compile').split(),
        'loader_workers': env_ints('GPU_CHECK_LOADER_WORKERS', '4 8'),
        'bench_repeats': env_number('GPU_CHECK_BENCH_REPEATS', 5),
        'bench_warmup': env_number('GPU_CHECK_BENCH_WARMUP', 2, minimum=0),
        'n_train': env_number('GPU_CHECK_N_TRAIN', 64),
        'test_files': env_text('GPU_CHECK_TEST_FILES', 'tests/test_networks.py tests/test_training.py').split(),
        'test_k': env_text('GPU_CHECK_TEST_K', 'cuda or gpu'),
        'python': os.environ.get('PYTHON') or sys.executable,
    }


# --------------------------------------------------------------------------- commands

class Command:
    """A subprocess in a session of its own, its output in a file. On timeout the whole session is
    killed: data-loader and compile workers too. `env` adds variables to this process's
    environment, or removes those it maps to None."""

    def __init__(self, argv, log_path, env=None):
        self.argv, self.log_path, self.started = argv, log_path, time.monotonic()
        environment = {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}
        with open(log_path, 'w') as log:
            self.process = subprocess.Popen(argv, cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def wait(self, timeout_s):
        """{'returncode', 'timed_out', 'seconds'}; returncode is None after a timeout."""
        try:
            self.process.wait(timeout=max(timeout_s, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            self.kill()
            timed_out = True
        return {'returncode': None if timed_out else self.process.returncode, 'timed_out': timed_out,
                'seconds': round(time.monotonic() - self.started, 1)}

    def kill(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()

    def output(self):
        return Path(self.log_path).read_text(errors='replace')

    def text(self):
        return shlex.join(self.argv)


def run_command(argv, log_path, timeout_s, env=None):
    command = Command(argv, log_path, env)
    return command, command.wait(timeout_s)


def tail(text, characters=2000):
    return text[-characters:]


# --------------------------------------------------------------------------- the check and its report

class Check:
    """The parts' results, the time guard, and the report files (rewritten after every part)."""

    def __init__(self, settings, out_dir, work_dir, device, machine):
        self.settings, self.out_dir, self.work_dir = settings, Path(out_dir), Path(work_dir)
        self.device, self.machine = device, machine
        self.started_at = datetime.datetime.now().isoformat(timespec='seconds')
        self.started = time.monotonic()
        self.parts = {}
        self.log_path = self.out_dir / 'gpu_check.log'
        self.log_path.write_text('')

    def seconds_left(self):
        return self.settings['budget_s'] - (time.monotonic() - self.started) - RESERVE_S

    def log_file(self, name):
        return self.work_dir / f'{name}.log'

    def python(self, *args):
        return [self.settings['python'], *args]

    def run(self, name, part, limit_s, *args):
        """Run one part within the time left; record its result (a crash of the part itself too)."""
        available = min(limit_s, self.seconds_left())
        print(f'[gpu_check] {name} ...', flush=True)
        if available < MIN_PART_S:
            result = {'status': 'skipped', 'summary': f'time guard: {self.seconds_left():.0f} s of the budget left'}
        else:
            started = time.monotonic()
            try:
                result = part(self, name, available, *args)
            except Exception:   # a bug in one part must not lose the others' results
                result = {'status': 'error', 'summary': 'the check itself failed', 'traceback': traceback.format_exc()}
            result['seconds'] = round(time.monotonic() - started, 1)
        self.parts[name] = result
        self.append_logs(name)
        print(f'[gpu_check] {name}: {result["status"]} ({result.get("seconds", 0)} s) {result["summary"]}', flush=True)
        self.write_report()

    def append_logs(self, name):
        """Move the part's command logs into the one log file that comes with the report."""
        with open(self.log_path, 'a') as combined:
            for log in sorted(self.work_dir.glob(f'{name}*.log')):
                combined.write(f'\n===== {log.stem} =====\n{log.read_text(errors="replace")}')
                log.unlink()

    def failed_parts(self):
        return [name for name, result in self.parts.items() if result['status'] not in ('pass', 'info')]

    def as_json(self):
        return {'started': self.started_at, 'seconds': round(time.monotonic() - self.started, 1),
                'device': self.device, 'status': 'fail' if self.failed_parts() else 'pass',
                'machine': self.machine, 'settings': self.settings, 'parts': self.parts}

    def write_report(self):
        results = self.as_json()
        (self.out_dir / 'report.json').write_text(json.dumps(results, indent=1) + '\n')
        (self.out_dir / 'report.md').write_text(markdown_report(results) + '\n')


# --------------------------------------------------------------------------- machine

def machine_info(torch, device):
    info = {'python': platform.python_version(), 'torch': torch.__version__, 'cuda_build': torch.version.cuda,
            'cpu_cores': os.cpu_count(), 'cpu': platform.processor() or platform.machine(),
            'commit': git_commit(),
            # torch's own defaults (cuDNN convolutions in TF32), which train.py overrides unless --tf32
            'tf32_defaults': {'cudnn_allow_tf32': torch.backends.cudnn.allow_tf32,
                              'cuda_matmul_allow_tf32': torch.backends.cuda.matmul.allow_tf32,
                              'float32_matmul_precision': torch.get_float32_matmul_precision()}}
    if device == 'cuda':
        properties = torch.cuda.get_device_properties(0)
        info.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2 ** 30, 1),
                    gpu_count=torch.cuda.device_count(), driver=nvidia_driver())
    return info


def git_commit():
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no'], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (commit + (' (with uncommitted changes)' if dirty else '')) or None


def nvidia_driver():
    try:
        return subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                              capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


# --------------------------------------------------------------------------- part: tests

def junit_counts(path):
    suite = ElementTree.parse(path).getroot()
    suite = suite if suite.tag == 'testsuite' else suite.find('testsuite')
    counts = {key: int(suite.get(key, 0)) for key in ('tests', 'failures', 'errors', 'skipped')}
    counts['passed'] = counts['tests'] - counts['failures'] - counts['errors'] - counts['skipped']
    cases = []
    for case in suite.iter('testcase'):
        outcome = next((child for child in case if child.tag in ('failure', 'error', 'skipped')), None)
        cases.append({'test': f'{case.get("classname")}::{case.get("name")}',
                      'outcome': 'passed' if outcome is None else outcome.tag,
                      'message': '' if outcome is None else (outcome.get('message') or '')[:500]})
    return counts, cases


def tests_part(check, name, timeout_s):
    settings = check.settings
    junit = check.work_dir / 'tests.xml'
    argv = check.python('-m', 'pytest', *settings['test_files'], '-k', settings['test_k'], '-q', '-rs',
                        '-p', 'no:cacheprovider', f'--junitxml={junit}')
    command, run = run_command(argv, check.log_file(name), timeout_s)
    if run['timed_out'] or not junit.exists():
        return {'status': 'fail', 'summary': 'timed out' if run['timed_out'] else 'pytest wrote no results',
                'command': command.text(), **run, 'output_tail': tail(command.output())}
    counts, cases = junit_counts(junit)
    ran = counts['tests'] > 0 and counts['failures'] == counts['errors'] == 0
    return {'status': 'pass' if ran else 'fail', 'command': command.text(), **run, 'counts': counts, 'cases': cases,
            'summary': f'{counts["passed"]} passed, {counts["skipped"]} skipped, {counts["failures"]} failed, '
                       f'{counts["errors"]} errors', 'output_tail': '' if ran else tail(command.output())}


# --------------------------------------------------------------------------- part: data

def data_part(check, name, timeout_s):
    dataroot = check.work_dir / 'data'
    argv = check.python('synthetic_data.py', '--dataroot', str(dataroot), '--n_train', str(check.settings['n_train']),
                        '--n_test', '2', '--seed', '0')
    command, run = run_command(argv, check.log_file(name), timeout_s)
    ok = run['returncode'] == 0
    return {'status': 'pass' if ok else 'fail', 'command': command.text(), **run, 'dataroot': str(dataroot),
            'summary': f'{check.settings["n_train"]} synthetic training pairs' if ok else 'synthetic_data.py failed',
            'output_tail': '' if ok else tail(command.output())}


# --------------------------------------------------------------------------- parts: GMM on the GPU and the CPU

def gmm_argv(check, run_name, gpu_ids, workers, steps):
    return check.python('train.py', '--name', run_name, '--stage', 'GMM', '--dataroot', str(check.work_dir / 'data'),
                        '--gpu_ids', gpu_ids, '--workers', str(workers), '--batch-size', '4',
                        '--keep_step', str(steps), '--decay_step', '0', '--display_count', '1',
                        '--save_count', str(steps), '--shuffle', '--seed', '0',
                        '--checkpoint_dir', str(check.work_dir / 'checkpoints'),
                        '--tensorboard_dir', str(check.work_dir / 'tensorboard'))


def losses_from_log(text):
    """The loss of every logged step, in step order (train.py logs each step with --display_count 1)."""
    by_step = {int(step): float(loss) for step, loss in LOSS_LINE.findall(text)}
    return [by_step[step] for step in sorted(by_step)]


def relative_differences(device_losses, cpu_losses):
    return [abs(d - c) / abs(c) if c else abs(d - c) for d, c in zip(device_losses, cpu_losses)]


def falls(losses, window):
    """{'first_mean', 'last_mean', 'falls'}: the mean of the last `window` losses against the first."""
    first, last = statistics.fmean(losses[:window]), statistics.fmean(losses[-window:])
    return {'first_mean': first, 'last_mean': last, 'falls': last < first}


def compare_curves(device_losses, cpu_losses, steps, settings):
    """The checks of the gmm_parity part: both runs complete; their first `tol_steps` losses agree
    within `rel_tol` (the first step's loss is the forward pass of identical weights on the same
    batch, so only float32 rounding separates the two); both losses fall over the run, and end at
    the same level within `end_tol` (the curves themselves part after a few steps: see the module
    docstring)."""
    common = min(len(device_losses), len(cpu_losses))
    differences = relative_differences(device_losses[:common], cpu_losses[:common])
    tol_steps = settings['tol_steps']
    checks = {'complete': len(device_losses) == len(cpu_losses) == steps,
              'first_steps_agree': common >= tol_steps and max(differences[:tol_steps]) < settings['rel_tol']}
    window = min(settings['trend_window'], common // 3)
    trends = {}
    if window >= 1:
        trends = {'device': falls(device_losses[:common], window), 'cpu': falls(cpu_losses[:common], window)}
    checks['both_fall'] = bool(trends) and all(trend['falls'] for trend in trends.values())
    end_difference = (abs(trends['device']['last_mean'] - trends['cpu']['last_mean']) / trends['cpu']['last_mean']
                      if trends else None)
    checks['same_level_at_end'] = end_difference is not None and end_difference < settings['end_tol']
    return {'checks': checks, 'relative_differences': differences, 'trend_window': window, 'trends': trends,
            'max_rel_diff_first_steps': max(differences[:tol_steps], default=None),
            'end_level_rel_diff': end_difference}


def max_weight_difference(path_a, path_b):
    import torch
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    return max((a[key].double() - b[key].double()).abs().max().item() for key in a if a[key].is_floating_point())


def gmm_parity_part(check, name, timeout_s):
    settings, steps = check.settings, check.settings['gmm_steps']
    cores = os.cpu_count() or 1
    cpu_threads = max(1, cores - GPU_RUN_WORKERS - CPU_RUN_WORKERS - 2)
    device_gpu_ids = '0' if check.device == 'cuda' else '-1'
    # The two runs train at the same time: the CPU run on most cores, the GPU run's loader on the rest.
    runs = {'device': Command(gmm_argv(check, 'gmm_device', device_gpu_ids, GPU_RUN_WORKERS, steps),
                              check.log_file(f'{name}_device'), {'OMP_NUM_THREADS': '2'}),
            'cpu': Command(gmm_argv(check, 'gmm_cpu', '-1', CPU_RUN_WORKERS, steps), check.log_file(f'{name}_cpu'),
                           {'OMP_NUM_THREADS': str(cpu_threads)})}
    deadline = time.monotonic() + timeout_s
    outcomes = {label: command.wait(deadline - time.monotonic()) for label, command in runs.items()}
    losses = {label: losses_from_log(command.output()) for label, command in runs.items()}
    result = {'commands': {label: command.text() for label, command in runs.items()}, 'runs': outcomes,
              'cpu_threads': cpu_threads, 'tf32': 'off (train.py without --tf32)' if check.device == 'cuda' else 'n/a',
              'losses': losses, **compare_curves(losses['device'], losses['cpu'], steps, settings)}
    finals = [check.work_dir / 'checkpoints' / run / 'gmm_final.pth' for run in ('gmm_device', 'gmm_cpu')]
    if all(path.exists() for path in finals):
        result['final_weights_max_abs_diff'] = max_weight_difference(*finals)
    passed = all(result['checks'].values())
    result['status'] = 'pass' if passed else 'fail'
    result['summary'] = (f'{len(losses["device"])} and {len(losses["cpu"])} of {steps} steps; '
                         + ', '.join(f'{check_name} {"yes" if ok else "NO"}'
                                     for check_name, ok in result['checks'].items()))
    if not passed:
        result['output_tails'] = {label: tail(command.output()) for label, command in runs.items()}
    return result


def gmm_tf32_part(check, name, timeout_s):
    if check.device != 'cuda':
        return {'status': 'info', 'summary': 'not run: the CPU has no TF32'}
    parity = check.parts.get('gmm_parity', {})
    cpu_losses = parity.get('losses', {}).get('cpu', [])
    command, run = run_command(gmm_argv(check, 'gmm_tf32', '0', GPU_RUN_WORKERS, check.settings['tf32_steps'])
                               + ['--tf32'], check.log_file(name), timeout_s)
    losses = losses_from_log(command.output())
    differences = relative_differences(losses, cpu_losses)
    summary = 'no step to compare with the CPU'
    if differences:
        without = parity.get('relative_differences') or [None]
        summary = (f'step 1 |rel diff| to the CPU: {differences[0]:.2e} with --tf32, '
                   f'{fmt(without[0])} without')
    return {'status': 'info' if run['returncode'] == 0 else 'fail', 'command': command.text(), **run,
            'losses': losses, 'relative_differences': differences, 'summary': summary,
            'output_tail': '' if run['returncode'] == 0 else tail(command.output())}


# --------------------------------------------------------------------------- part: benchmark

def benchmark_part(check, name, timeout_s, batch, flags):
    settings = check.settings
    json_path = check.work_dir / f'{name}.json'
    workers = ','.join(map(str, settings['loader_workers'])) if not flags else '0'
    argv = check.python('benchmark.py', '--device', check.device, '--batch_size', str(batch),
                        '--dataroot', str(check.work_dir / 'data'), '--workers', workers,
                        '--repeats', str(settings['bench_repeats']), '--warmup', str(settings['bench_warmup']),
                        '--seed', '0', '--json', str(json_path), *flags)
    command, run = run_command(argv, check.log_file(name), timeout_s)
    result = {'command': command.text(), **run, 'batch': batch, 'flags': ' '.join(flags) or 'float32'}
    if run['returncode'] != 0 or not json_path.exists():
        return {**result, 'status': 'fail', 'summary': 'timed out' if run['timed_out'] else 'benchmark.py failed',
                'output_tail': tail(command.output())}
    measured = json.loads(json_path.read_text())
    for stage in ('gmm', 'tom'):
        step = measured[f'{stage}_step']
        result[stage] = {'ms_per_step': step['median_s'] * 1e3, 'peak_gpu_bytes': step.get('cuda_peak_allocated_bytes'),
                         'peak_rss_bytes': step.get('peak_rss_bytes')}
    if not flags:
        result['loader_samples_per_s'] = {w: v['samples_per_s'] for w, v in measured['loader'].items()}
    result['status'] = 'pass'
    result['summary'] = (f'GMM {result["gmm"]["ms_per_step"]:.1f} ms/step, '
                         f'TOM {result["tom"]["ms_per_step"]:.1f} ms/step')
    return result


# --------------------------------------------------------------------------- markdown

def megabytes(n_bytes):
    return 'n/a' if n_bytes is None else f'{n_bytes / 2 ** 20:,.0f}'


def table_steps(count, every):
    """Rows of the loss table: the first 5 steps (where the curves part), every `every`-th step, the last."""
    return sorted({*range(1, min(count, 5) + 1), count, *range(every, count + 1, every)}) if count else []


def markdown_report(results):
    parts, machine = results['parts'], results['machine']
    gpu = f'{machine.get("gpu")} ({machine.get("gpu_memory_gib")} GiB, driver {machine.get("driver")})' \
        if results['device'] == 'cuda' else 'none: a dry run on the CPU (GPU_CHECK_DEVICE=cpu)'
    lines = ['# CP-VTON GPU check', '',
             f'- result: **{results["status"].upper()}**' + (
                 f' (not passed: {", ".join(n for n, r in parts.items() if r["status"] not in ("pass", "info"))})'
                 if results['status'] == 'fail' else ''),
             f'- started {results["started"]}, took {results["seconds"]:.0f} s '
             f'(time guard {results["settings"]["budget_s"]:.0f} s)',
             f'- GPU: {gpu}',
             f'- torch {machine["torch"]} (CUDA build {machine["cuda_build"]}), Python {machine["python"]}, '
             f'{machine["cpu_cores"]} CPU cores, commit {machine["commit"]}',
             '- TF32 as torch sets it by default (train.py turns it off unless --tf32): '
             + ', '.join(f'{key} {value}' for key, value in machine['tf32_defaults'].items()), '',
             '| part | status | seconds | summary |', '|---|---|---:|---|']
    lines += [f'| {name} | {r["status"]} | {r.get("seconds", "")} | {r["summary"]} |' for name, r in parts.items()]
    lines += tests_section(parts.get('tests'))
    lines += gmm_section(parts.get('gmm_parity'), parts.get('gmm_tf32'), results['settings'])
    lines += benchmark_section({n: r for n, r in parts.items() if n.startswith('benchmark')})
    for name, result in parts.items():
        if result['status'] in ('fail', 'error'):
            lines += ['', f'### {name}: {result["status"]}', '', '```',
                      (result.get('traceback') or result.get('output_tail')
                       or '\n'.join(result.get('output_tails', {}).values()) or '').strip(), '```']
    return '\n'.join(lines)


def tests_section(result):
    if not result or 'cases' not in result:
        return []
    lines = ['', '## CUDA tests', '', f'`{result["command"]}`', '', '| test | outcome | message |', '|---|---|---|']
    return lines + [f'| {c["test"]} | {c["outcome"]} | {c["message"].splitlines()[0] if c["message"] else ""} |'
                    for c in result['cases']]


def gmm_section(parity, tf32, settings):
    if not parity or 'losses' not in parity:
        return []
    device_losses, cpu_losses = parity['losses']['device'], parity['losses']['cpu']
    differences = parity['relative_differences']
    lines = ['', '## GMM: the same run on the GPU and on the CPU', '',
             f'Seed 0, batch 4, {settings["gmm_steps"]} steps; GPU run in float32 with TF32 {parity["tf32"]}; '
             f'CPU run on {parity["cpu_threads"]} threads; losses as train.py logs them (6 decimals). Checks: '
             + ', '.join(f'{name} **{"yes" if ok else "NO"}**' for name, ok in parity['checks'].items()), '',
             f'- first {settings["tol_steps"]} step(s): largest |rel diff| {fmt(parity["max_rel_diff_first_steps"])} '
             f'(allowed < {settings["rel_tol"]:g}; later steps part, as two CPU runs do: see gpu_check.py)']
    for label, trend in parity['trends'].items():
        lines.append(f'- {label}: mean loss of the first {parity["trend_window"]} steps {trend["first_mean"]:.5f}, '
                     f'of the last {trend["last_mean"]:.5f}')
    if parity['end_level_rel_diff'] is not None:
        lines.append(f'- mean loss of the last {parity["trend_window"]} steps, |rel diff| '
                     f'{parity["end_level_rel_diff"]:.3f} (allowed < {settings["end_tol"]:g})')
    if 'final_weights_max_abs_diff' in parity:
        lines.append(f'- final weights, largest |GPU - CPU|: {parity["final_weights_max_abs_diff"]:.3g}')
    tf32_losses = tf32.get('losses', []) if tf32 else []
    lines += ['', '| step | GPU loss | CPU loss | rel diff |' + (' GPU loss, --tf32 | rel diff |'
                                                              if tf32_losses else ''),
              '|---:|---:|---:|---:|' + ('---:|---:|' if tf32_losses else '')]
    for step in table_steps(min(len(device_losses), len(cpu_losses)), settings['table_every']):
        row = f'| {step} | {device_losses[step - 1]:.6f} | {cpu_losses[step - 1]:.6f} | {differences[step - 1]:.2e} |'
        if tf32_losses:
            row += (f' {tf32_losses[step - 1]:.6f} | {tf32["relative_differences"][step - 1]:.2e} |'
                    if step <= len(tf32['relative_differences']) else ' | |')
        lines.append(row)
    return lines


def fmt(value):
    return 'n/a' if value is None else f'{value:.2e}'


def benchmark_section(results):
    rows = [r for r in results.values() if 'gmm' in r]
    if not rows:
        return []
    lines = ['', '## Benchmark (benchmark.py: median ms per training step; peak GPU memory in MB)', '',
             '| batch | flags | GMM ms/step | TOM ms/step | GMM peak GPU MB | TOM peak GPU MB |',
             '|---:|---|---:|---:|---:|---:|']
    lines += [f'| {r["batch"]} | {r["flags"]} | {r["gmm"]["ms_per_step"]:.2f} | {r["tom"]["ms_per_step"]:.2f} | '
              f'{megabytes(r["gmm"]["peak_gpu_bytes"])} | {megabytes(r["tom"]["peak_gpu_bytes"])} |' for r in rows]
    loaders = [r for r in rows if 'loader_samples_per_s' in r]
    if loaders:
        lines += ['', '| data loader (CPDataLoader) | batch | samples/s |', '|---|---:|---:|']
        lines += [f'| {workers} workers | {r["batch"]} | {rate:,.0f} |'
                  for r in loaders for workers, rate in r['loader_samples_per_s'].items()]
    return lines


# --------------------------------------------------------------------------- main

def missing_modules():
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def parts_to_run(settings):
    """(name, function, time limit, extra arguments) in running order: the compiled benchmarks,
    the slowest and least essential, last."""
    parts = [('tests', tests_part, PART_LIMITS_S['tests']), ('data', data_part, PART_LIMITS_S['data']),
             ('gmm_parity', gmm_parity_part, PART_LIMITS_S['gmm_parity']),
             ('gmm_tf32', gmm_tf32_part, PART_LIMITS_S['gmm_tf32'])]
    parts += [(f'benchmark_b{batch}', benchmark_part, PART_LIMITS_S['benchmark'], batch, [])
              for batch in settings['batches']]
    parts += [(f'benchmark_fast_b{batch}', benchmark_part, PART_LIMITS_S['benchmark_fast'], batch,
               settings['fast_flags']) for batch in settings['batches']]
    return parts


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    settings = read_settings()
    if importlib.util.find_spec('torch') is None:
        print('gpu_check: torch is not installed for this Python; pip install -r requirements.txt', file=sys.stderr)
        return 2
    import torch
    if settings['device'] == 'auto' and not torch.cuda.is_available():
        print(f'gpu_check: no CUDA GPU here (torch {torch.__version__}, CUDA build {torch.version.cuda}): nothing '
              f'to check. GPU_CHECK_DEVICE=cpu dry-runs the check on the CPU.')
        return 0
    missing = missing_modules()
    if missing:
        print(f'gpu_check: missing Python packages: {", ".join(missing)} (pip install -r requirements.txt)',
              file=sys.stderr)
        return 2
    device = 'cuda' if settings['device'] == 'auto' else 'cpu'
    out_dir = Path(argv[0] if argv else REPO / 'gpu_check').resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    own_work_dir = not os.environ.get('GPU_CHECK_WORK_DIR')
    work_dir = Path(tempfile.mkdtemp(prefix='gpu_check_') if own_work_dir else os.environ['GPU_CHECK_WORK_DIR'])
    work_dir.mkdir(parents=True, exist_ok=True)
    check = Check(settings, out_dir, work_dir, device, machine_info(torch, device))
    try:
        for name, part, limit_s, *args in parts_to_run(settings):
            check.run(name, part, limit_s, *args)
    finally:
        if own_work_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    print(f'[gpu_check] {"PASS" if not check.failed_parts() else "FAIL"}: {out_dir / "report.md"}, '
          f'{out_dir / "report.json"}, {check.log_path}', flush=True)
    return 1 if check.failed_parts() else 0


if __name__ == '__main__':
    sys.exit(main())
