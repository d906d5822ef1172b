from basis_live.cli import main

main()
