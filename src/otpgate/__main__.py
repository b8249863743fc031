from otpgate.cli import main

main()
