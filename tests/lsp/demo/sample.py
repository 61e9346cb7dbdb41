def fibonacci(n):
    """Returns the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def is_prime(n):
    if n < 2:
        return False
    for d in range(2, int(n ** 0.5) + 1):
        if n % d == 0:
            return False
    return True


if __name__ == "__main__":
    print([fibonacci(i) for i in range(10)])
    print([p for p in range(50) if is_prime(p)])
