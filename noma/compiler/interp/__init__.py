"""A NumPy interpreter of NOMA's IR: the executable specification and the test oracle."""
