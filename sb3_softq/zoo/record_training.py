"""
``python -m sb3_softq.zoo record_training``: rl-zoo3's ``record_training`` script, recording each model through
``python -m sb3_softq.zoo record_video``.

rl-zoo3 2.9's script records each model with ``subprocess.call(["python", "-m", "rl_zoo3.record_video", ...])``: the
``python`` found on ``PATH`` (not necessarily the running interpreter) and rl-zoo3's own entry point, in which
algorithms registered by the caller are unknown. The whole script runs under ``if __name__ == "__main__"``, so
there is no seam to reuse it: this is the same script (same flags, same files) with that call replaced.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys

from huggingface_sb3 import EnvironmentName
from rl_zoo3.utils import ALGOS, get_latest_run_id


def _record_video(args: list[str], what: str) -> None:
    return_code = subprocess.call([sys.executable, "-m", "sb3_softq.zoo", "record_video", *args])
    if return_code != 0:
        raise SystemExit(f"Failed to record {what}")


def _ffmpeg(*args: str) -> None:
    subprocess.call(["ffmpeg", *args, "-hide_banner", "-loglevel", "error"])


def record_training() -> None:
    """Record a video of the final model, the best model and every checkpoint of a run, then join them (reads sys.argv)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", help="environment ID", type=EnvironmentName, default="CartPole-v1")
    parser.add_argument("-f", "--folder", help="Log folder", type=str, default="rl-trained-agents")
    parser.add_argument("-o", "--output-folder", help="Output folder", type=str)
    parser.add_argument("--algo", help="RL Algorithm", default="ppo", type=str, required=False, choices=list(ALGOS.keys()))
    parser.add_argument("-n", "--n-timesteps", help="number of timesteps", default=1000, type=int)
    parser.add_argument("--n-envs", help="number of environments", default=1, type=int)
    parser.add_argument("--deterministic", action="store_true", default=False, help="Use deterministic actions")
    parser.add_argument("-g", "--gif", action="store_true", default=False, help="Convert final video to gif")
    parser.add_argument("--seed", help="Random generator seed", type=int, default=0)
    parser.add_argument("--exp-id", help="Experiment ID (default: 0: latest, -1: no exp folder)", default=0, type=int)
    args = parser.parse_args()

    env_name: EnvironmentName = args.env
    if args.exp_id == 0:
        args.exp_id = get_latest_run_id(os.path.join(args.folder, args.algo), env_name)
        print(f"Loading latest experiment, id={args.exp_id}")
    if args.exp_id > 0:
        log_path = os.path.join(args.folder, args.algo, f"{env_name}_{args.exp_id}")
    else:
        log_path = os.path.join(args.folder, args.algo)
    if not os.path.isdir(log_path):
        raise SystemExit(f"The {log_path} folder was not found")

    video_folder = args.output_folder or os.path.abspath(os.path.join(log_path, "videos"))
    shutil.rmtree(video_folder, ignore_errors=True)
    os.makedirs(video_folder, exist_ok=True)

    # rl-zoo3 passes --deterministic whatever the flag (its test is `if deterministic is not None`)
    final_model_args = [
        "--env", env_name.gym_id, "--algo", args.algo, "--exp-id", str(args.exp_id), "-f", args.folder,
        "-o", video_folder, "--n-timesteps", str(args.n_timesteps), "--n-envs", str(args.n_envs),
        "--seed", str(args.seed), "--no-render", "--deterministic",
    ]  # fmt: skip
    if os.path.exists(os.path.join(log_path, f"{env_name}.zip")):
        _record_video(final_model_args, "the final model")
    if os.path.exists(os.path.join(log_path, "best_model.zip")):
        _record_video([*final_model_args, "--load-best"], "the best model")
    checkpoints = sorted(
        int(re.findall(r"\d+", entry.name)[0])
        for entry in os.scandir(log_path)
        if entry.is_file() and entry.name.startswith("rl_model_") and entry.name.endswith(".zip")
    )
    for checkpoint in checkpoints:
        _record_video([*final_model_args, "--load-checkpoint", str(checkpoint)], f"the {checkpoint} checkpoint model")

    # Caption each video with the first two words of its name, then join them: checkpoints, final model, best model
    videos = [entry.name for entry in os.scandir(video_folder) if entry.name.endswith(".mp4")]

    def checkpoint_steps(name: str) -> int:
        match = re.search("checkpoint-(.*?)-", name)
        return int(match.group(1)) if match is not None else 0

    videos = (
        sorted((name for name in videos if name.startswith("checkpoint")), key=checkpoint_steps)
        + [name for name in videos if name.startswith("final-model")]
        + [name for name in videos if name.startswith("best-model")]
    )
    captioned = []
    for name in videos:
        match = re.search(r"^(\w+)-(\w+)", name)
        text = f"{match.group(1)} {match.group(2)}" if match is not None else ""
        path = os.path.join(video_folder, name)
        captioned.append(path[:-4] + "_with_text.mp4")
        _ffmpeg(
            "-i", path, "-vf",
            f"drawtext=text='{text}': fontcolor=white: fontsize=24: box=1: boxcolor=black@0.5: boxborderw=5: "
            "x=(w-text_w)/2: y=12",
            "-codec:a", "copy", captioned[-1], "-y",
        )  # fmt: skip
    list_file = os.path.join(video_folder, "tmp.txt")
    with open(list_file, "w") as file:
        file.writelines(f"file {path}\n" for path in captioned)
    final_video_path = os.path.abspath(os.path.join(video_folder, "training.mp4"))
    _ffmpeg("-f", "concat", "-safe", "0", "-i", list_file, "-c", "copy", final_video_path)
    os.remove(list_file)
    print(f"Saving video to {final_video_path}")
    if args.gif:
        final_gif_path = os.path.abspath(os.path.join(video_folder, "training.gif"))
        _ffmpeg("-i", final_video_path, "-vf", "fps=10", final_gif_path)
        print(f"Saving gif to {final_gif_path}")
    for path in captioned:
        if os.path.exists(path):
            os.remove(path)
