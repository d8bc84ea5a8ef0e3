"""Beyond one machine: training on two machines.

Two machines are two `torchrun` launches on this host (one process each, gloo, 127.0.0.1 only),
joined by a c10d rendezvous as real machines would be. Every subprocess has a timeout, and every
process a test starts is killed when it ends, so a hang fails the test instead of blocking CI.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest
import torch

from conftest import REPO
from synthetic_data import generate_dataset

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason='finds the processes of a "machine" in /proc and binds gloo to lo')

TOTAL_STEPS = 4
SAVE_COUNT = 2
RUN_TIMEOUT = 240           # seconds for a whole 2-node run on 2 loaded cores (about 30 s when idle)
NODE_EXIT_TIMEOUT = 60      # seconds the surviving node may take to stop once the other one died
RANK0_LOG_LINE = 'processes 2, batch 2 per process (4 in all)'   # train.py logs on global rank 0 only


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp('multinode_data')
    generate_dataset(str(root), n_train=6, n_test=2, seed=1)
    return str(root)


def train_args(dataroot, checkpoint_dir, tensorboard_dir, *extra):
    return ['--name', 'run', '--stage', 'GMM', '--dataroot', dataroot, '--gpu_ids', '-1', '--workers', '0',
            '--batch-size', '2', '--keep_step', '2', '--decay_step', str(TOTAL_STEPS - 2),
            '--save_count', str(SAVE_COUNT), '--display_count', '1', '--shuffle', '--seed', '3',
            '--checkpoint_dir', str(checkpoint_dir), '--tensorboard_dir', str(tensorboard_dir), *extra]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until_listening(port, node, timeout=RUN_TIMEOUT):
    """The first launch hosts the rendezvous store on the endpoint's port; starting the second one
    after it listens makes the first one the host, so killing the second never takes the store away."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            assert node.process.poll() is None, f'node {node.node_rank} ended before listening:\n{node.output()}'
            assert time.monotonic() < deadline, f'nothing listens on port {port} after {timeout} s'
            time.sleep(0.1)


class Node:
    """One `torchrun --nnodes 2` launch: one machine of the job, its output in a file."""

    def __init__(self, node_rank, port, job, args, log_path):
        self.node_rank, self.log_path = node_rank, log_path
        # Every process of this machine inherits the marker, which is how kill() finds them all.
        self.marker = f'{job}/{node_rank}'
        env = dict(os.environ, OMP_NUM_THREADS='1', GLOO_SOCKET_IFNAME='lo', MULTINODE_TEST_NODE=self.marker)
        command = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '2', '--nproc_per_node', '1',
                   '--node_rank', str(node_rank), '--rdzv_backend', 'c10d', '--rdzv_endpoint', f'127.0.0.1:{port}',
                   '--rdzv_id', job, '--local-addr', '127.0.0.1', '--max-restarts', '0', 'train.py', *args]
        with open(log_path, 'w') as log:
            self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def output(self):
        return self.log_path.read_text(errors='replace')

    def pids(self):
        pids = []
        for entry in os.listdir('/proc'):
            try:
                with open(f'/proc/{entry}/environ', 'rb') as f:
                    if f'MULTINODE_TEST_NODE={self.marker}'.encode() in f.read().split(b'\0'):
                        pids.append(int(entry))
            except (OSError, ValueError):
                continue
        return pids

    def kill(self):
        """SIGKILL every process of this machine at once, as if it lost power. torchrun starts its
        workers in sessions of their own, so killing torchrun's process group alone would leave
        train.py running (and training on with the other machine)."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)

    def holds_rank_0(self):
        return RANK0_LOG_LINE in self.output()


def rank0_node(nodes):
    holders = [node for node in nodes if node.holds_rank_0()]
    assert len(holders) == 1, 'exactly one node logs: the one with global rank 0'
    return holders[0]


def launch(dataroot, work, label, checkpoint_dirs, *extra):
    """Two nodes of one job; checkpoint_dirs[i] is node i's --checkpoint_dir (one shared folder, or
    one per machine)."""
    port, job = free_port(), f'{label}-{uuid.uuid4().hex[:8]}'
    nodes = []
    for node_rank in (0, 1):
        args = train_args(dataroot, checkpoint_dirs[node_rank], work / f'tensorboard{node_rank}', *extra)
        nodes.append(Node(node_rank, port, job, args, work / f'{label}_node{node_rank}.log'))
        if node_rank == 0:
            wait_until_listening(port, nodes[0])
    return nodes


def wait_all(nodes, timeout=RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    for node in nodes:
        try:
            node.process.wait(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            pytest.fail(f'node {node.node_rank} still runs after {timeout} s:\n{node.output()[-3000:]}')
    return [node.process.returncode for node in nodes]


@pytest.fixture
def nodes_killed_at_exit():
    """Every node a test launches; whatever still runs when the test ends is killed."""
    launched = []
    yield launched
    for node in launched:
        node.kill()


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file()) if folder.exists() else []


def final_weights(checkpoint_dir):
    return torch.load(checkpoint_dir / 'run' / 'gmm_final.pth', weights_only=True)


@pytest.fixture(scope='module')
def uninterrupted(dataroot, tmp_path_factory):
    """A 2-node run to the end, each node with a --checkpoint_dir of its own (machines without a
    shared disk): shows which node writes."""
    work = tmp_path_factory.mktemp('uninterrupted')
    checkpoint_dirs = [work / 'checkpoints0', work / 'checkpoints1']
    nodes = launch(dataroot, work, 'uninterrupted', checkpoint_dirs)
    try:
        return_codes = wait_all(nodes)
    finally:
        for node in nodes:
            node.kill()
    assert return_codes == [0, 0], '\n'.join(node.output()[-3000:] for node in nodes)
    return {'nodes': nodes, 'work': work, 'checkpoint_dirs': checkpoint_dirs}


def test_two_nodes_stay_in_sync_and_only_global_rank_0_writes(uninterrupted):
    nodes, work = uninterrupted['nodes'], uninterrupted['work']
    rank0 = rank0_node(nodes)
    other = nodes[1 - rank0.node_rank]
    output = rank0.output()
    divergence = re.search(r'largest parameter difference between ranks (\S+)', output)
    assert divergence, output[-3000:]
    assert float(divergence.group(1)) == 0.0
    written = files_under(uninterrupted['checkpoint_dirs'][rank0.node_rank])
    assert {'run/step_000002.pth', 'run/resume.pth', 'run/gmm_final.pth', 'run/options.json'} <= set(written)
    assert files_under(uninterrupted['checkpoint_dirs'][other.node_rank]) == []
    assert files_under(work / f'tensorboard{other.node_rank}') == []
    assert files_under(work / f'tensorboard{rank0.node_rank}')


def test_a_dead_node_stops_the_other_and_both_resume_to_the_same_weights(dataroot, tmp_path, uninterrupted,
                                                                          nodes_killed_at_exit):
    # One --checkpoint_dir for both nodes, as on a shared disk: every process reads resume.pth.
    shared = tmp_path / 'checkpoints'
    nodes = launch(dataroot, tmp_path, 'killed', [shared, shared])
    nodes_killed_at_exit.extend(nodes)
    resume_file = shared / 'run' / 'resume.pth'
    deadline = time.monotonic() + RUN_TIMEOUT
    while not resume_file.exists():
        assert all(node.process.poll() is None for node in nodes), '\n'.join(n.output()[-3000:] for n in nodes)
        assert time.monotonic() < deadline, f'{resume_file} did not appear in {RUN_TIMEOUT} s'
        time.sleep(0.05)
    survivor, dead = nodes   # node 0 hosts the rendezvous store (see wait_until_listening)
    dead.kill()
    killed_at = time.monotonic()
    try:
        survivor.process.wait(timeout=NODE_EXIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f'node 0 still runs {NODE_EXIT_TIMEOUT} s after node 1 died:\n{survivor.output()[-3000:]}')
    exit_seconds = time.monotonic() - killed_at
    output = survivor.output()
    assert survivor.process.returncode != 0, output[-3000:]
    # What the user sees on the surviving machine: gloo names the lost peer, torchrun the failed script.
    assert re.search(r'Connection (closed|reset) by peer|Broken pipe', output), output[-3000:]
    assert 'train.py FAILED' in output, output[-3000:]
    print(f'node 0 stopped {exit_seconds:.1f} s after node 1 was killed, exit code {survivor.process.returncode}')

    resumed_from = torch.load(resume_file, weights_only=True)['step']
    assert SAVE_COUNT <= resumed_from < TOTAL_STEPS
    resumed = launch(dataroot, tmp_path, 'resumed', [shared, shared], '--resume')
    nodes_killed_at_exit.extend(resumed)
    assert wait_all(resumed) == [0, 0], '\n'.join(node.output()[-3000:] for node in resumed)
    assert f'at step {resumed_from}' in rank0_node(resumed).output()
    expected = final_weights(uninterrupted['checkpoint_dirs'][rank0_node(uninterrupted['nodes']).node_rank])
    weights = final_weights(shared)
    assert list(weights) == list(expected)
    for key in expected:
        # Bitwise on the CPU with --workers 0: the same data order, optimizer and schedule state.
        assert torch.equal(weights[key], expected[key]), key
