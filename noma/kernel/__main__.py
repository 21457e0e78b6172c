"""`python -m noma.kernel [-f CONNECTION_FILE]` runs the kernel; `python -m noma.kernel install ...`
installs its kernelspec (see noma.kernel.install)."""

import sys


def _launch() -> None:
    from ipykernel.kernelapp import IPKernelApp

    from noma.kernel.kernel import NomaKernel

    IPKernelApp.launch_instance(kernel_class=NomaKernel)


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"]:
        from noma.kernel.install import main

        raise SystemExit(main(sys.argv[1:]))
    _launch()
