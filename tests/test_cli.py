"""The command line answers at once: importing it loads none of the heavy libraries, which only the commands that need them import."""
import subprocess
import sys

HEAVY = ('torch', 'torchvision', 'papermill', 'dvc', 'pandas', 'sklearn', 'matplotlib', 'dlib')


def test_importing_the_cli_loads_no_heavy_library():
    code = f"import sys, fer_study.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == '[]', r.stdout


def test_help_and_usage_errors_load_no_heavy_library():
    code = ("import sys\nfrom fer_study.cli import main\n"
            "for argv in (['--help'], ['analyze', '--help'], ['train'], ['nonsense']):\n"
            "    try: main(argv)\n"
            "    except SystemExit: pass\n"
            f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert 'LOADED []' in r.stdout, r.stdout + r.stderr
    assert 'analyze' in r.stdout and 'report' in r.stdout  # the help was printed
    assert 'the following arguments are required' in r.stderr and 'invalid choice' in r.stderr
